/* service: `dvsnap mount` run by the system (see service.h): systemd notification for
 * `dvsnap mount --foreground` as a Type=notify unit (sd_notify(3)), and the background fork.
 *
 * READY=1 must mean the mount serves, not that mount(2) returned: the notifier thread lists the
 * mountpoint through the kernel, which holds that request until the session loop (started after
 * fs_opts.on_mounted returns) has answered FUSE_INIT and the listing. STOPPING=1 must come when
 * the stop begins, before the unmount: libfuse's signal handlers end the session loop, so
 * service_mount_ready puts a handler in front of each of them that writes a byte to a pipe and
 * then calls libfuse's; the notifier thread wakes on that byte and tells the manager. An unmount
 * from outside (`dvsnap umount`, fusermount3 -u) ends the loop without a signal:
 * service_mount_stopped wakes the thread then.
 *
 * service_daemon_start forks `dvsnap mount` into the background itself, before the repository
 * (an SQLite catalog) is opened (fs_run never forks; forking later would carry the open catalog
 * across the fork). The parent waits on a pipe for one byte from the child.
 *
 * Limits: one mount per process (the state is a single static struct); STATUS= names the newest
 * restore point of the repository, whoever took it (this mount's capture loop, a timer, another
 * machine), refreshed every SERVICE_STATUS_SECONDS.
 * Threading: `svc` is written by service_mount_ready before the thread and the handlers start,
 * and by service_mount_stopped after the thread has been joined; in between the thread and the
 * handlers only read it, except stopping_sent (atomic). */
#include "tools/dvsnap/service.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "backend/base/log.h"

static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP};
#define N_STOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

static struct {
    bool started;                              /* a notifier thread runs */
    pthread_t thread;
    int wake[2];                               /* pipe; a byte: the stop begins */
    char mountpoint[PATH_MAX];
    struct repo *repo;                         /* borrowed */
    struct sigaction chained[N_STOP_SIGNALS];  /* libfuse's handlers, called after ours */
    atomic_bool stopping_sent;
} svc = {.wake = {-1, -1}};

/* Async-signal-safe: write(2), then libfuse's handler (which only sets flags). */
static void on_stop_signal(int sig, siginfo_t *info, void *uctx)
{
    int saved_errno = errno;
    char byte = 's';
    if (write(svc.wake[1], &byte, 1) < 0) {
        /* the pipe is full: a byte is already waiting */
    }
    for (size_t i = 0; i < N_STOP_SIGNALS; i++) {
        const struct sigaction *c = &svc.chained[i];
        if (stop_signals[i] != sig)
            continue;
        if (c->sa_flags & SA_SIGINFO)
            c->sa_sigaction(sig, info, uctx);
        else if (c->sa_handler != SIG_DFL && c->sa_handler != SIG_IGN)
            c->sa_handler(sig);
        else if (c->sa_handler == SIG_DFL) { /* nobody would end the loop: end the process */
            signal(sig, SIG_DFL);
            raise(sig);
        }
    }
    errno = saved_errno;
}

/* "serving MP: N environments; newest point ENV/POINT, taken TIME" into out. */
static void compose_status(char *out, size_t n)
{
    struct dverr err = {0};
    char **envs = NULL;
    size_t n_envs = 0;
    char newest_env[256] = "", newest_point[32] = "", mp[256];
    time_t newest = 0;
    log_escape(svc.mountpoint, mp, sizeof mp);
    int rc = repo_envs(svc.repo, &envs, &n_envs, &err);
    for (size_t i = 0; rc == 0 && i < n_envs; i++) {
        struct point_summary *ps = NULL;
        size_t n_ps = 0;
        rc = repo_points(svc.repo, envs[i], &ps, &n_ps, &err);
        if (rc == 0 && n_ps > 0 && ps[n_ps - 1].taken_at >= newest) { /* oldest first */
            newest = ps[n_ps - 1].taken_at;
            log_escape(envs[i], newest_env, sizeof newest_env);
            snprintf(newest_point, sizeof newest_point, "%s", ps[n_ps - 1].name);
        }
        point_summaries_free(ps, n_ps);
    }
    strv_free(envs, n_envs);
    if (rc) {
        char why[256];
        snprintf(out, n, "serving %s; the repository cannot be read: %s", mp,
                 log_escape(dverr_msg(&err), why, sizeof why));
    } else if (!newest_point[0]) {
        snprintf(out, n, "serving %s: %zu environments, no restore point yet", mp, n_envs);
    } else {
        char taken[32];
        rfc3339_from_time(newest, taken);
        snprintf(out, n, "serving %s: %zu environments; newest point %s/%s, taken %s", mp, n_envs,
                 newest_env, newest_point, taken);
    }
}

/* Reads the whole listing, as `ls` would; 0 or -errno. */
static int list_mountpoint(void)
{
    DIR *d = opendir(svc.mountpoint);
    if (!d)
        return -errno;
    errno = 0;
    while (readdir(d))
        ;
    int rc = -errno;
    closedir(d);
    return rc;
}

static void send_stopping(void)
{
    if (!atomic_exchange(&svc.stopping_sent, true))
        sd_notify(0, "STOPPING=1\nSTATUS=stopping: unmounting");
}

static void *notifier_main(void *arg)
{
    char status[1024];
    int rc = list_mountpoint();
    struct pollfd pfd = {.fd = svc.wake[0], .events = POLLIN};
    if (rc) {
        /* the session ended before it served (a stop, or a failure fs_run reports) */
        log_warn("service: the mountpoint %s did not answer a listing: %s", svc.mountpoint,
                 strerror(-rc));
        send_stopping();
        return NULL;
    }
    compose_status(status, sizeof status);
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
    for (;;) {
        int ready = poll(&pfd, 1, SERVICE_STATUS_SECONDS * 1000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready != 0)
            break;
        compose_status(status, sizeof status);
        sd_notifyf(0, "STATUS=%s", status);
    }
    send_stopping();
    return NULL;
}

void service_mount_ready(const char *mountpoint, struct repo *repo)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock || svc.started)
        return;
    if (strlen(mountpoint) >= sizeof svc.mountpoint || pipe2(svc.wake, O_CLOEXEC | O_NONBLOCK)) {
        log_error("service: cannot watch %s for systemd; READY=1 will not be sent", mountpoint);
        return;
    }
    snprintf(svc.mountpoint, sizeof svc.mountpoint, "%s", mountpoint);
    svc.repo = repo;
    atomic_store(&svc.stopping_sent, false);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_stop_signal;
    sa.sa_flags = SA_SIGINFO; /* no SA_RESTART: libfuse's loop waits for EINTR, as with its own */
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], NULL, &svc.chained[i]);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &sa, NULL);
    int rc = thread_start(&svc.thread, notifier_main, NULL);
    if (rc) {
        log_error("service: cannot start the notifier thread: %s", strerror(rc));
        for (size_t i = 0; i < N_STOP_SIGNALS; i++)
            sigaction(stop_signals[i], &svc.chained[i], NULL);
        close(svc.wake[0]);
        close(svc.wake[1]);
        svc.wake[0] = svc.wake[1] = -1;
        return;
    }
    svc.started = true;
}

void service_mount_stopped(void)
{
    if (!svc.started)
        return;
    char byte = 'q';
    if (write(svc.wake[1], &byte, 1) < 0) {
        /* full: the thread has a byte to wake on already */
    }
    pthread_join(svc.thread, NULL);
    /* what fuse_remove_signal_handlers would have done, had ours not been in front */
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        signal(stop_signals[i], SIG_DFL);
    close(svc.wake[0]);
    close(svc.wake[1]);
    svc.wake[0] = svc.wake[1] = -1;
    svc.repo = NULL;
    svc.started = false;
}

/* The write end of the pipe the parent waits on (the child's; -1 elsewhere). Written by
 * service_daemon_start and service_daemon_ready only, before and after the threads. */
static int daemon_ready_fd = -1;

int service_daemon_start(void)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -errno;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -e;
    }
    if (pid == 0) {
        close(pipefd[0]);
        daemon_ready_fd = pipefd[1];
        setsid();
        return 0;
    }
    close(pipefd[1]);
    char byte;
    ssize_t n;
    do
        n = read(pipefd[0], &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1)
        _exit(0);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    _exit(WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1);
}

void service_daemon_ready(void)
{
    if (daemon_ready_fd < 0)
        return;
    char byte = 'r';
    if (write(daemon_ready_fd, &byte, 1) != 1)
        log_warn("service: the parent did not get the ready byte: %s", strerror(errno));
    close(daemon_ready_fd);
    daemon_ready_fd = -1;
    if (chdir("/") != 0)
        log_warn("service: chdir /: %s", strerror(errno));
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
}
