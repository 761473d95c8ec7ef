/* cmd_key: `dvsnap key list | add | remove | passwd`, the passwords of an encrypted repository
 * (repo.h repo_key_*, keys.h). The repository opens with the configured password as for any
 * command; a new password comes from --new-password-file (the secret-file rules: 0600, yours) or is
 * typed twice on the terminal. Output for people on stdout, errors on stderr.
 * Single-threaded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/dvsnap/cli.h"

static int key_usage(const char *msg)
{
    fprintf(stderr, "dvsnap key: %s\n%s", msg, CMD_KEY_USAGE);
    return EXIT_USAGE;
}

static int key_fail(int rc, const struct dverr *err)
{
    fprintf(stderr, "dvsnap key: %s\n", *dverr_msg(err) ? dverr_msg(err) : strerror(-rc));
    return rc == -EIO ? EXIT_DAMAGED : cli_exit_code(rc) == EXIT_USAGE ? EXIT_FAIL
                                                                       : cli_exit_code(rc);
}

/* The new password: --new-password-file FILE, else the terminal (twice). */
static int new_password(int argc, char **argv, struct buf *pass, struct dverr *err)
{
    if (argc == 2)
        return keys_passphrase_new_tty(pass, err);
    if (argc == 4 && strcmp(argv[2], "--new-password-file") == 0)
        return keys_passphrase_file(argv[3], pass, err);
    return -EINVAL;
}

static int key_list(struct repo *repo)
{
    struct dverr err = {0};
    struct key_info *v = NULL;
    size_t n = 0, current = 0;
    int rc = repo_key_list(repo, &v, &n, &current, &err);
    if (rc)
        return key_fail(rc, &err);
    printf("  %-32s  %-20s  %-16s  %s\n", "ID", "CREATED", "USER", "HOST");
    for (size_t i = 0; i < n; i++)
        printf("%c %-32s  %-20s  %-16s  %s\n", i == current ? '*' : ' ', v[i].id, v[i].created,
               v[i].user, v[i].host);
    printf("%zu key%s; * the key this command opened the repository with\n", n,
           n == 1 ? "" : "s");
    free(v);
    return EXIT_OK;
}

int cmd_key(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    if (argc < 2)
        return key_usage("which? list, add, remove or passwd");
    const char *sub = argv[1];
    bool list = !strcmp(sub, "list"), add = !strcmp(sub, "add"), rm = !strcmp(sub, "remove"),
         passwd = !strcmp(sub, "passwd");
    if (!list && !add && !rm && !passwd)
        return key_usage("unknown subcommand");
    if ((list && argc != 2) || (rm && argc != 3) ||
        ((add || passwd) && argc != 2 && argc != 4))
        return key_usage("wrong arguments");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    if (list)
        return key_list(repo);
    if (rm) {
        int rc = repo_key_remove(repo, argv[2], &err);
        if (rc)
            return key_fail(rc, &err);
        printf("removed key %s\n", argv[2]);
        return EXIT_OK;
    }
    struct buf pass = BUF_INIT;
    int rc = new_password(argc, argv, &pass, &err);
    if (rc == -EINVAL && !*dverr_msg(&err))
        return key_usage("wrong arguments");
    char id[KEYS_ID_HEX + 1];
    if (!rc)
        rc = add ? repo_key_add(repo, pass.data, pass.len, id, &err)
                 : repo_key_passwd(repo, pass.data, pass.len, id, &err);
    keys_passphrase_release(&pass);
    if (rc)
        return key_fail(rc, &err);
    if (add)
        printf("added key %s\n", id);
    else
        printf("changed the password: key %s replaces the old key\n", id);
    return EXIT_OK;
}
