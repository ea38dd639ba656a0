/* Shared by the fuzz targets: one Lua state holding the vt module (linked in, built with the
 * fuzzer's instrumentation), for the code that works on Lua values. */
#ifndef VT_FUZZ_HARNESS_H
#define VT_FUZZ_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

/* The state, made on first use, with the vt table on top of an empty stack. */
lua_State *fuzz_lua(void);
/* Calls vt.<name> with the n values on top of the stack, protected; returns the number of
 * results (all of them) or -1 when it raised (the message is then on top). */
int fuzz_call(lua_State *L, const char *name, int nargs);
/* Ends an input: what it left on the stack is freed now. libFuzzer runs a leak check after
 * every input whose mallocs and frees do not balance, and Lua's collector would free it later. */
void fuzz_done(lua_State *L);
/* Aborts (a fuzzer finding) with a message when cond is false. */
void fuzz_check(int cond, const char *what);

#endif
