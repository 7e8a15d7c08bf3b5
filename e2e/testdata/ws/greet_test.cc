#include <iostream>
#include "greet.h"
int main() {
  if (Greet("x") != "hello, x") { std::cerr << "bad greeting" << std::endl; return 1; }
  std::cout << "greet_test ok" << std::endl;
  return 0;
}
