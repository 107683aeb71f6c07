"""octopus_api.py: the few HTTP calls Octopus's published HA scripts make, with urllib.

Requests carry the key as X-Octopus-ApiKey, exactly as Octopus's scripts send it; an HTTP error
raises, as Invoke-RestMethod does."""
import json
import urllib.request


class Api:
    def __init__(self, url, key):
        self.url = url[:-1] if url.endswith("/") else url
        self.key = key

    def call(self, method, path, body=None, content_type=None):
        """method path (joined to the server URL as the scripts do); returns the parsed JSON."""
        data = None if body is None else json.dumps(body, indent=4).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("X-Octopus-ApiKey", self.key)
        if content_type:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None
