/* cmd_restore: STUB until its issue lands. */
#include <stdio.h>
#include "tools/dvsnap/cli.h"
int cmd_restore(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap restore: not implemented yet\n");
    return EXIT_FAIL;
}
