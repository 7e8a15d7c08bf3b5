#include "c/summary.h"

size_t count_lines(const char *buf, size_t len) {
  size_t lines = 0;
  for (size_t i = 0; i < len; i++) {
    if (buf[i] == '\n') lines++;
  }
  return lines;
}
