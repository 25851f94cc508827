# Cross-compile for 64-bit Windows with Debian's mingw-w64 and run what is
# built (tests, try_run) under wine.
#
#   cmake -DCMAKE_TOOLCHAIN_FILE=tests/windows/mingw-w64-x86_64.cmake ...
#
# NATFWD_WINE names the wine loader; by default the first of wine64 (Debian's
# wine64 package installs it outside PATH) and wine that is found.

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR AMD64)

set(_triplet x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${_triplet}-gcc)
set(CMAKE_CXX_COMPILER ${_triplet}-g++)
set(CMAKE_RC_COMPILER ${_triplet}-windres)

# Headers and libraries come from the mingw-w64 sysroot only; programs
# (the compiler's helpers) from the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/${_triplet})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# No libgcc or winpthread DLLs to carry around: each .exe runs on its own.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

if(NOT NATFWD_WINE)
  find_program(NATFWD_WINE NAMES wine64 wine
               PATHS /usr/lib/wine /usr/lib64/wine NO_CMAKE_FIND_ROOT_PATH)
endif()
if(NATFWD_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${NATFWD_WINE})
endif()
