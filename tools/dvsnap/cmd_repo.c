/* cmd_repo: STUB until its issue lands. */
#include <stdio.h>
#include "tools/dvsnap/cli.h"
int cmd_init(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap init: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_env(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap env: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_capture(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap capture: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_backup(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap backup: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_points(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap points: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_cat(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap cat: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_changes(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap changes: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_prune(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap prune: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_forget(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap forget: not implemented yet\n");
    return EXIT_FAIL;
}
int cmd_check(struct cli *cli, int argc, char **argv)
{
    fprintf(stderr, "dvsnap check: not implemented yet\n");
    return EXIT_FAIL;
}
