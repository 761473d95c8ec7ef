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

static int key_list(struct cli *cli, struct repo *repo)
{
    struct dverr err = {0};
    struct key_info *v = NULL;
    size_t n = 0, current = 0;
    int rc = repo_key_list(repo, &v, &n, &current, &err);
    if (rc)
        return cli_fail(cli, rc, &err);
    printf("  %-32s  %-20s  %-16s  %s\n", "ID", "CREATED", "USER", "HOST");
    for (size_t i = 0; i < n; i++)
        printf("%c %-32s  %-20s  %-16s  %s\n", i == current ? '*' : ' ', v[i].id, v[i].created,
               v[i].user, v[i].host);
    if (!cli->quiet)
        printf("%zu key%s; * the key this command opened the repository with\n", n,
               n == 1 ? "" : "s");
    free(v);
    return EXIT_OK;
}

int cmd_key(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    const char *new_file = NULL;
    for (size_t i = 0; i < a->n_opts; i++)
        if (a->opts[i].val == O_NEW_PASSWORD_FILE)
            new_file = a->opts[i].arg;
    const char *sub = a->n_pos ? a->pos[0] : "";
    bool list = !strcmp(sub, "list"), add = !strcmp(sub, "add"), rm = !strcmp(sub, "remove"),
         passwd = !strcmp(sub, "passwd");
    if (!list && !add && !rm && !passwd)
        return cli_usage_error(cli, "which? list, add, remove or passwd");
    if (a->n_pos != (rm ? 2u : 1u))
        return cli_usage_error(cli, rm ? "remove needs the key's ID" : "takes no more arguments");
    if (new_file && !add && !passwd)
        return cli_usage_error(cli, "--new-password-file is for add and passwd");
    /* remove and passwd delete a key object */
    struct repo *repo = rm || passwd ? cli_repo_prune(cli) : cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    if (list)
        return key_list(cli, repo);
    if (rm) {
        int rc = repo_key_remove(repo, a->pos[1], &err);
        if (rc)
            return cli_fail(cli, rc, &err);
        if (!cli->quiet)
            printf("removed key %s\n", a->pos[1]);
        return EXIT_OK;
    }
    struct buf pass = BUF_INIT;
    char id[KEYS_ID_HEX + 1];
    int rc = new_file ? keys_passphrase_file(new_file, &pass, &err)
                      : keys_passphrase_new_tty(&pass, &err);
    if (rc == -ENOKEY)
        dverr_set(&err, rc, "no terminal to ask for the new password on: give it in a file "
                  "(--new-password-file FILE, mode 0600)");
    if (!rc)
        rc = add ? repo_key_add(repo, pass.data, pass.len, id, &err)
                 : repo_key_passwd(repo, pass.data, pass.len, id, &err);
    keys_passphrase_release(&pass);
    if (rc)
        return cli_fail(cli, rc, &err);
    if (!cli->quiet)
        printf(add ? "added key %s\n" : "changed the password: key %s replaces the old key\n", id);
    return EXIT_OK;
}
