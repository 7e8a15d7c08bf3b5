/* The small library of the fan-out benchmark: a file's line count, size
   and FNV-1a hash. */
#ifndef SUMMARY_H
#define SUMMARY_H

#include <stddef.h>
#include <stdint.h>

/* read_all returns the contents of path (malloc'ed) and its length in
   *len, or NULL on error. */
char *read_all(const char *path, size_t *len);

/* count_lines counts the newlines in buf. */
size_t count_lines(const char *buf, size_t len);

/* fnv1a32 is the 32-bit FNV-1a hash of buf. */
uint32_t fnv1a32(const char *buf, size_t len);

/* hex32 writes v as 8 lower-case hex digits and a NUL into out. */
void hex32(uint32_t v, char out[9]);

#endif
