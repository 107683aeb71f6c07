/* reply.h: reading the elements of a hiredis reply without tripping over its shape: an element
 * out of range, of another type or missing reads as empty or 0. For the scripts' replies (their
 * shapes are in lua/<name>.lua's header comments) and hashes read as flat field/value arrays. */
#ifndef SHOAL_REPLY_H
#define SHOAL_REPLY_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

/* A reply's number: an integer reply, or a string one in decimal; 0 otherwise. */
int64_t reply_num(const redisReply *r);

/* Element i of array reply r as a string (a string or status reply; borrowed from r), "" when r
 * is no array, i is out of range or the element is of another type. len (may be NULL) gets its
 * length (binary-safe), 0 for "". */
const char *reply_str(const redisReply *r, size_t i, size_t *len);
/* Element i of array reply r as a number (reply_num), 0 when r is no array or i is out of range. */
int64_t reply_int(const redisReply *r, size_t i);

/* The value of field `name` in a flat field/value array (HGETALL's shape) starting at element
 * from, or NULL when absent (or not a string). Borrowed from r. */
const char *reply_field(const redisReply *r, size_t from, const char *name);

#endif
