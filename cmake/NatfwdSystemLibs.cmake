# The system's miniupnpc and libnatpmp, for builds that link them instead of
# natfwd's forks (distributions, mostly).
#
# natfwd_find_system(<lib> <found var>) looks for the library, reports each
# step, and on success makes an imported target natfwd::system_<lib> and sets
# NATFWD_<lib>_TARGET, _VERSION and _ORIGIN in the caller's scope.
#
# natfwd_use_library(<lib>) chooses between the system's library and the fork
# as NATFWD_USE_SYSTEM_LIBS says; with ON, a missing library is an error.

set(NATFWD_MIN_MINIUPNPC_API 17)

function(_natfwd_define_from_header header macro out)
  file(STRINGS "${header}" lines REGEX "#[ \t]*define[ \t]+${macro}[ \t]")
  set(value "")
  if(lines)
    list(GET lines 0 line)
    string(REGEX REPLACE ".*${macro}[ \t]+\"?([^\" \t]*)\"?.*" "\\1" value "${line}")
  endif()
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

# find_path and find_library keep what they found in the cache, so a build
# folder configured again with CMAKE_PREFIX_PATH pointing at another
# installation would quietly keep the first one. Forget the cached results
# when what steers the search has changed since, or when what was found is
# gone; a path given on the first configure (-DNATFWD_SYSTEM_<lib>_LIBRARY=)
# is kept.
function(_natfwd_forget_stale_search lib)
  set(inc NATFWD_SYSTEM_${lib}_INCLUDE_DIR)
  set(lib_var NATFWD_SYSTEM_${lib}_LIBRARY)
  set(seen NATFWD_SYSTEM_${lib}_SEARCHED_WITH)
  set(context "${CMAKE_PREFIX_PATH}|$ENV{CMAKE_PREFIX_PATH}|${CMAKE_IGNORE_PATH}")
  string(APPEND context "|${CMAKE_IGNORE_PREFIX_PATH}|${CMAKE_FIND_ROOT_PATH}")

  set(stale FALSE)
  if(DEFINED CACHE{${seen}} AND NOT "${context}" STREQUAL "$CACHE{${seen}}")
    set(stale TRUE)
  endif()
  foreach(var IN ITEMS ${inc} ${lib_var})
    if(${var} AND NOT EXISTS "${${var}}")
      set(stale TRUE)
    endif()
  endforeach()
  if(stale)
    unset(${inc} CACHE)
    unset(${lib_var} CACHE)
  endif()
  set(${seen} "${context}" CACHE INTERNAL "What steered the last search for ${lib}")
endfunction()

function(natfwd_find_system lib found_var)
  message(CHECK_START "Looking for the system's ${lib}")
  list(APPEND CMAKE_MESSAGE_INDENT "  ")
  set(${found_var} FALSE PARENT_SCOPE)
  _natfwd_forget_stale_search(${lib})

  if(lib STREQUAL "miniupnpc")
    set(header_name miniupnpc.h)
    set(suffix miniupnpc)
    set(lib_names miniupnpc)
  else()
    set(header_name natpmp.h)
    set(suffix "")
    set(lib_names natpmp)
  endif()

  message(CHECK_START "${header_name}")
  find_path(NATFWD_SYSTEM_${lib}_INCLUDE_DIR ${header_name} PATH_SUFFIXES ${suffix})
  if(NOT NATFWD_SYSTEM_${lib}_INCLUDE_DIR)
    message(CHECK_FAIL "not found")
    list(POP_BACK CMAKE_MESSAGE_INDENT)
    message(CHECK_FAIL "not found")
    return()
  endif()
  message(CHECK_PASS "${NATFWD_SYSTEM_${lib}_INCLUDE_DIR}")

  message(CHECK_START "lib${lib_names}")
  find_library(NATFWD_SYSTEM_${lib}_LIBRARY NAMES ${lib_names})
  if(NOT NATFWD_SYSTEM_${lib}_LIBRARY)
    message(CHECK_FAIL "not found")
    list(POP_BACK CMAKE_MESSAGE_INDENT)
    message(CHECK_FAIL "not found")
    return()
  endif()
  message(CHECK_PASS "${NATFWD_SYSTEM_${lib}_LIBRARY}")

  set(header "${NATFWD_SYSTEM_${lib}_INCLUDE_DIR}/${header_name}")
  if(lib STREQUAL "miniupnpc")
    _natfwd_define_from_header("${header}" MINIUPNPC_VERSION version)
    _natfwd_define_from_header("${header}" MINIUPNPC_API_VERSION api)
    message(CHECK_START "API version ${NATFWD_MIN_MINIUPNPC_API} or later")
    if(NOT api OR api LESS NATFWD_MIN_MINIUPNPC_API)
      message(CHECK_FAIL "found API '${api}' (miniupnpc ${version})")
      list(POP_BACK CMAKE_MESSAGE_INDENT)
      message(CHECK_FAIL "too old")
      return()
    endif()
    message(CHECK_PASS "API ${api}")
    set(origin "system miniupnpc ${version} (API ${api})")
  else()
    # libnatpmp states no version in its header; a pkg-config file may.
    set(version "unknown")
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_get_variable(pc_version natpmp version)
      if(pc_version)
        set(version "${pc_version}")
      endif()
    endif()
    set(origin "system libnatpmp ${version}")
  endif()

  if(NOT TARGET natfwd::system_${lib})
    add_library(natfwd::system_${lib} UNKNOWN IMPORTED)
    set_target_properties(natfwd::system_${lib} PROPERTIES
      IMPORTED_LOCATION "${NATFWD_SYSTEM_${lib}_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${NATFWD_SYSTEM_${lib}_INCLUDE_DIR}")
    if(WIN32)
      set_property(TARGET natfwd::system_${lib} APPEND PROPERTY
        INTERFACE_LINK_LIBRARIES ws2_32 iphlpapi)
    endif()
  endif()

  list(POP_BACK CMAKE_MESSAGE_INDENT)
  message(CHECK_PASS "${origin}")
  set(${found_var} TRUE PARENT_SCOPE)
  set(NATFWD_${lib}_TARGET natfwd::system_${lib} PARENT_SCOPE)
  set(NATFWD_${lib}_VERSION "${version}" PARENT_SCOPE)
  set(NATFWD_${lib}_ORIGIN "${origin}" PARENT_SCOPE)
endfunction()

macro(natfwd_use_library lib)
  set(_natfwd_found FALSE)
  if(NATFWD_USE_SYSTEM_LIBS STREQUAL "ON" OR NATFWD_USE_SYSTEM_LIBS STREQUAL "AUTO")
    natfwd_find_system(${lib} _natfwd_found)
    if(NOT _natfwd_found AND NATFWD_USE_SYSTEM_LIBS STREQUAL "ON")
      message(FATAL_ERROR
        "NATFWD_USE_SYSTEM_LIBS=ON but no usable system ${lib} was found "
        "(see the checks above). Install its development files, point "
        "CMAKE_PREFIX_PATH at it, or build natfwd's fork with "
        "NATFWD_USE_SYSTEM_LIBS=OFF.")
    endif()
    if(NOT _natfwd_found)
      message(STATUS "Falling back to natfwd's fork of ${lib} (NATFWD_USE_SYSTEM_LIBS=AUTO)")
    endif()
  endif()
  if(NOT _natfwd_found)
    natfwd_add_fork(${lib})
  endif()
endmacro()
