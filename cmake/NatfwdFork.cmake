# natfwd's forks: a pristine upstream tree with our patch queue applied.
#
# natfwd_add_fork(<lib>) makes vendor/<lib>/tree ready (through tools/patchq
# in a git checkout; an sdist ships the patched tree), adds the library's own
# CMake build as a static, position-independent library, and sets in the
# caller's scope:
#
#   NATFWD_<lib>_TARGET   the library target to link
#   NATFWD_<lib>_VERSION  the upstream release, from vendor/<lib>/pin.toml
#   NATFWD_<lib>_ORIGIN   "natfwd fork of <lib> <version>, queue <id>"

# The upstream build's own target names.
set(NATFWD_FORK_TARGET_miniupnpc libminiupnpc-static)
set(NATFWD_FORK_TARGET_libnatpmp natpmp)

# Read one `key = "value"` line of a pin. The pins are TOML, but this is the
# only kind of line the build needs from them.
function(_natfwd_pin_value lib key out)
  set(pin "${PROJECT_SOURCE_DIR}/vendor/${lib}/pin.toml")
  file(STRINGS "${pin}" lines REGEX "^${key} = \"")
  list(GET lines 0 line)
  string(REGEX REPLACE "^${key} = \"([^\"]*)\".*" "\\1" value "${line}")
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

# A short identity of the patch queue: a hash over the series, in order, and
# every patch it names. Two builds with the same identity carry the same code.
function(_natfwd_queue_identity lib out_id out_count)
  set(dir "${PROJECT_SOURCE_DIR}/patches/${lib}")
  set_property(DIRECTORY "${PROJECT_SOURCE_DIR}" APPEND PROPERTY
    CMAKE_CONFIGURE_DEPENDS "${dir}/series")
  file(STRINGS "${dir}/series" lines)
  set(digest_input "")
  set(count 0)
  foreach(line IN LISTS lines)
    string(STRIP "${line}" line)
    if(line STREQUAL "" OR line MATCHES "^#")
      continue()
    endif()
    string(REGEX REPLACE "[ \t].*$" "" patch "${line}")
    file(SHA256 "${dir}/${patch}" patch_hash)
    set_property(DIRECTORY "${PROJECT_SOURCE_DIR}" APPEND PROPERTY
      CMAKE_CONFIGURE_DEPENDS "${dir}/${patch}")
    string(APPEND digest_input "${patch} ${patch_hash}\n")
    math(EXPR count "${count} + 1")
  endforeach()
  string(SHA256 digest "${digest_input}")
  string(SUBSTRING "${digest}" 0 12 digest)
  set(${out_id} "${digest}" PARENT_SCOPE)
  set(${out_count} "${count}" PARENT_SCOPE)
endfunction()

function(natfwd_add_fork lib)
  set(tree "${PROJECT_SOURCE_DIR}/vendor/${lib}/tree")
  set(patchq "${PROJECT_SOURCE_DIR}/tools/patchq")

  message(CHECK_START "Preparing natfwd's fork of ${lib}")
  if(EXISTS "${patchq}" AND NATFWD_FETCH)
    # Cheap when the tree is already up to date; fetches (once, into the
    # download cache) and patches when it is missing or stale.
    execute_process(
      COMMAND "${Python_EXECUTABLE}" "${patchq}" apply ${lib}
      WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
      RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(CHECK_FAIL "tools/patchq apply ${lib} failed")
      message(FATAL_ERROR
        "Could not prepare vendor/${lib}/tree (see the message above). "
        "Set NATFWD_USE_SYSTEM_LIBS=ON to build against the system's ${lib}.")
    endif()
  endif()
  if(NOT EXISTS "${tree}/CMakeLists.txt")
    message(CHECK_FAIL "no tree")
    message(FATAL_ERROR
      "vendor/${lib}/tree is missing. In a git checkout run "
      "'tools/patchq apply ${lib}' (or leave NATFWD_FETCH on), or set "
      "NATFWD_USE_SYSTEM_LIBS=ON to use the system's ${lib}.")
  endif()

  _natfwd_pin_value(${lib} version version)
  _natfwd_queue_identity(${lib} queue count)
  set(origin "natfwd fork of ${lib} ${version}, queue ${queue} (${count} patches)")
  message(CHECK_PASS "${origin}")

  if(lib STREQUAL "miniupnpc")
    set(UPNPC_BUILD_STATIC ON)
    set(UPNPC_BUILD_SHARED OFF)
    set(UPNPC_BUILD_TESTS OFF)
    set(UPNPC_BUILD_SAMPLE OFF)
    set(UPNPC_NO_INSTALL ON)
  endif()
  add_subdirectory("${tree}" "${CMAKE_CURRENT_BINARY_DIR}/vendor/${lib}"
                   EXCLUDE_FROM_ALL SYSTEM)
  if(lib STREQUAL "miniupnpc")
    # natfwd reports every error itself, one line each: keep the library's
    # own messages off stderr (patches/miniupnpc, "keep it off stderr").
    target_compile_definitions(${NATFWD_FORK_TARGET_miniupnpc} PRIVATE MINIUPNPC_QUIET)
    # Upstream's CMake build sets socket timeouts everywhere but on Windows,
    # where a socket would then wait forever for a silent gateway. The
    # queue's Winsock fix makes the timeouts right there too.
    if(WIN32)
      target_compile_definitions(${NATFWD_FORK_TARGET_miniupnpc}
        PRIVATE MINIUPNPC_SET_SOCKET_TIMEOUT)
    endif()
  endif()

  install(FILES "${tree}/LICENSE"
          DESTINATION "${NATFWD_LICENSE_DIR}/${lib}"
          COMPONENT python)

  set(NATFWD_${lib}_TARGET "${NATFWD_FORK_TARGET_${lib}}" PARENT_SCOPE)
  set(NATFWD_${lib}_VERSION "${version}" PARENT_SCOPE)
  set(NATFWD_${lib}_ORIGIN "${origin}" PARENT_SCOPE)
endfunction()
