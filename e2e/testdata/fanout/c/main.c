/* summarize FILE prints FILE's line count, size and FNV-1a hash. */
#include <stdio.h>
#include <stdlib.h>

#include "c/summary.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: summarize FILE\n");
    return 2;
  }
  size_t len;
  char *buf = read_all(argv[1], &len);
  if (buf == NULL) {
    perror(argv[1]);
    return 1;
  }
  char hex[9];
  hex32(fnv1a32(buf, len), hex);
  printf("lines=%zu bytes=%zu fnv1a32=%s\n", count_lines(buf, len), len, hex);
  free(buf);
  return 0;
}
