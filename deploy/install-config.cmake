# Install-time half of the install rules at the end of CMakeLists.txt (install(SCRIPT)): it runs
# during `cmake --install` and cpack, when CMAKE_INSTALL_PREFIX is the prefix really used, so the
# systemd unit names the installed binary and environment file wherever they land.
#   prefix /usr (the .deb):  /usr/bin/shoal, /usr/lib/systemd/system/shoal.service, /etc/shoal/shoal.env
#   any other prefix P:      P/bin/shoal,    P/lib/systemd/system/shoal.service,    P/etc/shoal/shoal.env
# Set by CMakeLists.txt before this runs: SHOAL_SRC, SHOAL_BINDIR_REL, SHOAL_DOCDIR_REL, SHOAL_STAGE.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" OR CMAKE_INSTALL_PREFIX STREQUAL "/")
  set(etc "/etc")                               # GNU and Debian convention for prefix /usr
else()
  set(etc "${CMAKE_INSTALL_PREFIX}/etc")
endif()
set(SHOAL_ENV_FILE "${etc}/shoal/shoal.env")
set(SHOAL_BIN "${CMAKE_INSTALL_PREFIX}/${SHOAL_BINDIR_REL}/shoal")
set(SHOAL_DOC_DIR "${CMAKE_INSTALL_PREFIX}/${SHOAL_DOCDIR_REL}")
configure_file("${SHOAL_SRC}/deploy/systemd/shoal.service.in" "${SHOAL_STAGE}/shoal.service" @ONLY)
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
     FILES "${SHOAL_STAGE}/shoal.service")
# The environment file holds credentials (0600, read by systemd as root before it drops
# privileges). An existing one is the operator's: never overwrite it.
if(EXISTS "$ENV{DESTDIR}${SHOAL_ENV_FILE}")
  message(STATUS "Keeping existing: $ENV{DESTDIR}${SHOAL_ENV_FILE}")
else()
  file(INSTALL DESTINATION "${etc}/shoal" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE
       FILES "${SHOAL_SRC}/deploy/systemd/shoal.env")
endif()
