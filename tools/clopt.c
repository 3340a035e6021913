#include <stdio.h>
#include "clopt.h"
int main(void) { printf("%s\n", clopt_version_string()); return 0; }
