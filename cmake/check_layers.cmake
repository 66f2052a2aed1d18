# The layers of DESIGN.md ("Layers and folders"), checked on the #includes.
#
#   cmake -DZT_SRC_DIR=<repo>/src -P cmake/check_layers.cmake
#
# Every folder's headers sit on one include path ("folder/file.h" from src/),
# so linking one library per folder cannot catch a forbidden #include; this
# script does. It reads every source and header under ZT_SRC_DIR, and fails,
# naming each offending line, when a folder includes one that its row below
# does not allow. The build runs it before the libraries (target zt_layers)
# and ctest runs it as Layers.IncludesFollowDesign.
#
# Invariant: this table is the only encoding of DESIGN.md's rows in the build.
# Each row keeps DESIGN.md's words (DESIGN); where the code needs more than
# those words allow, the row says so in RESTATED, and a comment says why.
cmake_minimum_required(VERSION 3.20)

if(NOT ZT_SRC_DIR OR NOT IS_DIRECTORY "${ZT_SRC_DIR}")
  message(FATAL_ERROR "check_layers: pass -DZT_SRC_DIR=<repo>/src (got '${ZT_SRC_DIR}')")
endif()

set(ZT_LAYERS "")

# zt_layer(<folder> USES <folder or folder/header>... DESIGN <words> [RESTATED <words>]
#          [IMPLEMENTATION_SUBFOLDERS <why>] [EVERY_LAYER_ABOVE_MAY_USE])
#   USES                       what the folder may include: a whole folder ("ops") or
#                              one header of it ("model/config.h"); its own folder always
#   IMPLEMENTATION_SUBFOLDERS  the folder's subfolders (ops/cpu, comm/mpi, ...) are its
#                              own; other folders include only its top-level headers
#   EVERY_LAYER_ABOVE_MAY_USE  every folder except core may include this one
function(zt_layer folder)
  # PARSE_ARGV keeps the semicolon of DESIGN.md's "core; every layer above ...".
  cmake_parse_arguments(PARSE_ARGV 1 _zl "EVERY_LAYER_ABOVE_MAY_USE"
                        "DESIGN;RESTATED;IMPLEMENTATION_SUBFOLDERS" "USES")
  set(ZT_LAYERS ${ZT_LAYERS} ${folder} PARENT_SCOPE)
  set(ZT_USES_${folder} ${_zl_USES} PARENT_SCOPE)
  set(ZT_DESIGN_${folder} "${_zl_DESIGN}" PARENT_SCOPE)
  set(ZT_RESTATED_${folder} "${_zl_RESTATED}" PARENT_SCOPE)
  set(ZT_IMPL_${folder} "${_zl_IMPLEMENTATION_SUBFOLDERS}" PARENT_SCOPE)
  set(ZT_ABOVE_MAY_USE_${folder} ${_zl_EVERY_LAYER_ABOVE_MAY_USE} PARENT_SCOPE)
endfunction()

# ---- The table (DESIGN.md's rows, in its order) -----------------------------------

zt_layer(core USES DESIGN "std only")

zt_layer(ops USES core
  DESIGN "core, OpenBLAS, oneDNN, cuBLASLt, cuDNN"
  IMPLEMENTATION_SUBFOLDERS
    "DESIGN.md: one header per op family; ops/cpu/*.cpp and ops/cuda/*.cu implement the same names")

zt_layer(model USES core ops
  DESIGN "core, ops")

# The backends' headers (comm/mpi, comm/nccl) exist only in builds with MPI or
# CUDA, so a folder outside comm that included one would break the other builds.
zt_layer(comm USES core
  DESIGN "core, MPI, NCCL"
  IMPLEMENTATION_SUBFOLDERS
    "DESIGN.md: the Communicator interface; backends mpi/ and nccl/ are built only when present")

# "model's configs and unit layout" as headers: config.h and layout.h, plus
# two that hold no forward/backward either: hooks.h is the per-unit interface
# the engine implements (acquire, release, unit_grads, grads_ready), and
# activations.h the activation bytes a config takes, which the memory
# estimate adds up (declared there, apart from Model, for this row).
zt_layer(zero USES core prof ops comm model/config.h model/layout.h model/hooks.h
                   model/activations.h
  DESIGN "core, prof, ops, comm, model's configs and unit layout (not its forward/backward)"
  RESTATED "model's configs and unit layout are model/config.h, model/layout.h, model/hooks.h \
(UnitHooks) and model/activations.h (activation sizing)")

zt_layer(data USES core
  DESIGN "core, SentencePiece")

# Saving a sharded checkpoint is collective: every rank writes its own file,
# the ranks all-gather their file records (bytes, sha256) so that rank 0 can
# write the manifest, and barriers order the directory's creation and its
# final rename. save_checkpoint therefore takes the run's Communicator.
zt_layer(ckpt USES core zero model comm
  DESIGN "core, zero, model"
  RESTATED "and comm: a sharded save all-gathers the ranks' file records and barriers \
through the Communicator")

zt_layer(prof USES core
  DESIGN "core; every layer above may report to it"
  EVERY_LAYER_ABOVE_MAY_USE)

zt_layer(train USES core ops model comm zero data ckpt prof
  DESIGN "everything above")

# The lab (sweeps, figures, the stage advisor) sits on train: a sweep runs
# `zerotrain train` as child processes and reads their metrics files, and
# the advisor asks zero's memory estimate and comm's byte formulas.
zt_layer(lab USES train core model comm zero data prof
  DESIGN "sweep matrices, plot templates, example reports"
  RESTATED "the code behind them: train and what it sits on (a sweep runs train's runs, the \
advisor asks zero's estimate)")

# cli sits on train, and on what train sits on: each subcommand other than
# train drives its own layer (estimate: zero; bench-comm: comm; prepare: data;
# export: ckpt; eval and generate: model, zero, data), and every file reports
# errors through core's ZT_CHECK. Routing those through train would add
# pass-through functions, not a boundary.
zt_layer(cli USES lab train core ops model comm zero data ckpt prof
  DESIGN "train"
  RESTATED "and everything train may use: its subcommands drive their own layer and check with \
core's ZT_CHECK")

# ---- The check --------------------------------------------------------------------

foreach(layer IN LISTS ZT_LAYERS)
  if(ZT_ABOVE_MAY_USE_${layer})
    foreach(other IN LISTS ZT_LAYERS)
      if(NOT other STREQUAL "core" AND NOT other STREQUAL layer
         AND NOT layer IN_LIST ZT_USES_${other})
        list(APPEND ZT_USES_${other} ${layer})
        list(APPEND ZT_GRANTED_BY_${other} ${layer})
      endif()
    endforeach()
  endif()
endforeach()

function(zt_rule_text folder out)
  set(text "${folder} may use ${ZT_DESIGN_${folder}} (DESIGN.md)")
  foreach(granting IN LISTS ZT_GRANTED_BY_${folder})
    string(APPEND text ", and ${granting} (${granting}'s row: \"${ZT_DESIGN_${granting}}\")")
  endforeach()
  if(ZT_RESTATED_${folder})
    string(APPEND text "; re-stated in cmake/check_layers.cmake: ${ZT_RESTATED_${folder}}")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

macro(zt_violation text)
  string(APPEND violations "\n  ${text}")
  math(EXPR n_bad "${n_bad} + 1")
endmacro()

file(GLOB_RECURSE files RELATIVE "${ZT_SRC_DIR}" "${ZT_SRC_DIR}/*.h" "${ZT_SRC_DIR}/*.hpp"
     "${ZT_SRC_DIR}/*.cpp" "${ZT_SRC_DIR}/*.cc" "${ZT_SRC_DIR}/*.cu" "${ZT_SRC_DIR}/*.cuh")
list(SORT files)
set(violations "")  # one line per violation (a string: messages hold semicolons)
set(n_bad 0)
set(n_includes 0)
foreach(file IN LISTS files)
  set(where "src/${file}")
  string(REGEX MATCH "^[^/]+/" folder "${file}")
  string(REGEX REPLACE "/$" "" folder "${folder}")
  if(folder STREQUAL "")
    zt_violation("${where}: not in a folder; each file belongs to a layer of DESIGN.md")
    continue()
  endif()
  if(NOT folder IN_LIST ZT_LAYERS)
    zt_violation("${where}: folder ${folder} is not in DESIGN.md's table of layers \
(add its row to cmake/check_layers.cmake)")
    continue()
  endif()
  file(STRINGS "${ZT_SRC_DIR}/${file}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]")
  foreach(line IN LISTS lines)
    if(NOT line MATCHES "#[ \t]*include[ \t]*[\"<]([^\">]+)[\">]")
      continue()
    endif()
    set(inc "${CMAKE_MATCH_1}")
    math(EXPR n_includes "${n_includes} + 1")
    if(inc MATCHES "^\\.\\.?/")
      zt_violation("${where} includes ${inc}: include \"folder/file.h\" from src/, \
so the layer it comes from is visible")
      continue()
    endif()
    if(NOT inc MATCHES "^([^/]+)/")
      continue()  # this folder's own header, a system or library header
    endif()
    set(target "${CMAKE_MATCH_1}")
    if(NOT target IN_LIST ZT_LAYERS OR target STREQUAL folder)
      continue()  # a library's header (<oneapi/dnnl/dnnl.hpp>), or its own folder
    endif()
    if(ZT_IMPL_${target} AND inc MATCHES "^[^/]+/([^/]+)/")
      zt_violation("${where} includes ${inc}: ${target}/${CMAKE_MATCH_1} is inside ${target}: \
other folders include only ${target}/<name>.h (${ZT_IMPL_${target}})")
      continue()
    endif()
    if(NOT target IN_LIST ZT_USES_${folder} AND NOT inc IN_LIST ZT_USES_${folder})
      zt_rule_text(${folder} rule)
      zt_violation("${where} includes ${inc}: ${rule}")
    endif()
  endforeach()
endforeach()

list(LENGTH files n_files)
if(n_bad GREATER 0)
  message(FATAL_ERROR "${n_bad} #include(s) break the layers (the table is in "
                      "cmake/check_layers.cmake):${violations}\n")
endif()
message(STATUS "layers: the ${n_includes} #includes of ${n_files} files in src/ follow DESIGN.md")
