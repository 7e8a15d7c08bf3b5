#include <iostream>
#include "greet.h"
int main() { std::cout << Greet("paddock") << std::endl; return 0; }
