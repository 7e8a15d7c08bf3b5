#include "c/summary.h"

void hex32(uint32_t v, char out[9]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 7; i >= 0; i--) {
    out[i] = digits[v & 0xf];
    v >>= 4;
  }
  out[8] = '\0';
}
