/* dvsim: STUB until issue 2 lands. */
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "dvsim: not implemented yet\n");
    return 1;
}
