# PMU_SANITIZE=address builds everything with ASan+UBSan, =thread with TSan.
if(PMU_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(PMU_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT PMU_SANITIZE STREQUAL "")
  message(FATAL_ERROR "PMU_SANITIZE must be '', 'address' or 'thread', not '${PMU_SANITIZE}'")
endif()

# PMU_FUZZ: every library gets libFuzzer's coverage instrumentation.
if(PMU_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "PMU_FUZZ needs clang (make fuzz sets CC=clang CXX=clang++)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
