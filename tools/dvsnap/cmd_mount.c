/* cmd_mount: STUB until its issue lands. */
#include <stdio.h>
#include "tools/dvsnap/cli.h"
int cmd_mount(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap mount: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_umount(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap umount: not implemented yet\n");
    return EXIT_FAIL;
}
