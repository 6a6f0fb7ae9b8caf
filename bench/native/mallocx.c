// Diagnostic only (conn-memory, docs/benchmarks.md section 8): glibc's malloc_info() and
// malloc_trim(0) for a Node process, loaded by workers/mem-probe.mjs when
// BENCH_MALLOC_ADDON names the built file. Not part of any build; build it by hand:
//   gcc -O2 -shared -fPIC -I"$NODE_DIR/include/node" -o /tmp/mallocx.node bench/native/mallocx.c
#include <node_api.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
static napi_value Trim(napi_env env, napi_callback_info info) {
  napi_value r; napi_create_int32(env, malloc_trim(0), &r); return r;
}
static napi_value Info(napi_env env, napi_callback_info info) {
  char *buf = NULL; size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  malloc_info(0, f); fclose(f);
  napi_value r; napi_create_string_utf8(env, buf, len, &r); free(buf); return r;
}
NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "trim", NAPI_AUTO_LENGTH, Trim, NULL, &fn); napi_set_named_property(env, exports, "trim", fn);
  napi_create_function(env, "info", NAPI_AUTO_LENGTH, Info, NULL, &fn); napi_set_named_property(env, exports, "info", fn);
  return exports;
}
