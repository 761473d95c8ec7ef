/* faultproxy: a TCP proxy on loopback that injects network faults between dvsnap and a server
 * (dvsim or an object store). There is no netem or iptables here, so this is how tests make a
 * connection reset after N bytes, a stall, a trickle, a truncated body, a wrong Content-Length or a
 * refused connection.
 *
 *   faultproxy --listen 127.0.0.1:0 --ready-file F --target 127.0.0.1:PORT --mode-file M [--log L]
 *
 * The mode file is read at every accepted connection; one line: MODE [ARG] [times=K]
 *   pass                 relay both ways (also when the file is missing or empty)
 *   reset_after N        relay N bytes of the response, then reset the connection (RST)
 *   truncate N           relay N bytes of the response, then close cleanly (FIN)
 *   stall                relay the request, never answer (the connection stays open)
 *   trickle N            relay the response at N bytes per second
 *   bad_length           add 1000 to the first Content-Length of the response, then close after
 *                        the real body (the client sees a short body)
 *   refuse               reset the connection at once
 * times=K applies the fault to the next K connections only, then behaves as pass (the count is
 * kept in the proxy). --log appends one line per connection: "<n> <mode>".
 * One thread per connection; bounded by the test's own lifetime (it is killed by tests/lib.sh). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_PASS, M_RESET, M_TRUNCATE, M_STALL, M_TRICKLE, M_BAD_LENGTH, M_REFUSE };
static const char *mode_names[] = {"pass", "reset_after", "truncate", "stall", "trickle",
                                   "bad_length", "refuse"};

struct proxy {
    struct sockaddr_in target;
    const char *mode_file;
    const char *log_file;
    pthread_mutex_t lock;   /* guards applied, conn_count, last_mode_line */
    long applied;           /* connections the current mode line has been applied to */
    long conn_count;
    char last_mode_line[256];
};

struct conn {
    struct proxy *px;
    int client;
    enum mode mode;
    long arg;
};

static int parse_hostport(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)strtoul(colon + 1, NULL, 10));
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static void read_mode(struct proxy *px, enum mode *mode, long *arg)
{
    char line[256] = "";
    FILE *f = px->mode_file ? fopen(px->mode_file, "r") : NULL;
    if (f) {
        if (!fgets(line, sizeof line, f))
            line[0] = '\0';
        fclose(f);
    }
    line[strcspn(line, "\n")] = '\0';
    char name[32] = "pass";
    long a = 0, times = -1;
    char *t = strstr(line, "times=");
    if (t)
        times = strtol(t + 6, NULL, 10);
    sscanf(line, "%31s %ld", name, &a);
    *mode = M_PASS;
    for (unsigned i = 0; i < sizeof mode_names / sizeof *mode_names; i++)
        if (strcmp(name, mode_names[i]) == 0)
            *mode = (enum mode)i;
    *arg = a;
    pthread_mutex_lock(&px->lock);
    if (strcmp(line, px->last_mode_line) != 0) { /* a new mode line restarts the count */
        snprintf(px->last_mode_line, sizeof px->last_mode_line, "%s", line);
        px->applied = 0;
    }
    if (times >= 0 && px->applied >= times)
        *mode = M_PASS;
    else
        px->applied++;
    long n = ++px->conn_count;
    pthread_mutex_unlock(&px->lock);
    if (px->log_file && (f = fopen(px->log_file, "a"))) {
        fprintf(f, "%ld %s\n", n, mode_names[*mode]);
        fclose(f);
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void hard_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Add 1000 to the first Content-Length value in buf (in place into out). */
static size_t inflate_length(const char *in, size_t n, char *out, size_t cap)
{
    const char *h = NULL;
    for (size_t i = 0; i + 15 < n; i++)
        if (strncasecmp(in + i, "content-length:", 15) == 0) {
            h = in + i;
            break;
        }
    if (!h) {
        memcpy(out, in, n);
        return n;
    }
    const char *v = h + 15;
    while (v < in + n && *v == ' ')
        v++;
    long len = strtol(v, NULL, 10);
    const char *e = v;
    while (e < in + n && *e >= '0' && *e <= '9')
        e++;
    size_t pre = (size_t)(v - in);
    int w = snprintf(out + pre, cap - pre, "%ld", len + 1000);
    memcpy(out, in, pre);
    memcpy(out + pre + (size_t)w, e, n - (size_t)(e - in));
    return pre + (size_t)w + (n - (size_t)(e - in));
}

static void *serve(void *arg)
{
    struct conn *c = arg;
    int up = -1;
    long sent = 0;
    bool inflated = false;
    if (c->mode == M_REFUSE) {
        hard_reset(c->client);
        free(c);
        return NULL;
    }
    up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (up < 0 || connect(up, (struct sockaddr *)&c->px->target, sizeof c->px->target)) {
        hard_reset(c->client);
        goto out;
    }
    struct pollfd fds[2] = {{c->client, POLLIN, 0}, {up, POLLIN, 0}};
    char buf[65536], tmp[65536 + 32];
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(c->client, buf, sizeof buf, 0);
            if (r <= 0)
                break;
            if (write_all(up, buf, (size_t)r))
                break;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (c->mode == M_STALL) {
                /* swallow nothing, answer nothing: wait until the client gives up */
                fds[1].events = 0;
                fds[1].fd = -1;
                continue;
            }
            size_t want = sizeof buf;
            if (c->mode == M_TRICKLE)
                want = 1;
            ssize_t r = recv(up, buf, want, 0);
            if (r <= 0)
                break;
            size_t n = (size_t)r;
            const char *p = buf;
            if ((c->mode == M_RESET || c->mode == M_TRUNCATE) && sent + (long)n >= c->arg) {
                write_all(c->client, buf, (size_t)(c->arg - sent));
                if (c->mode == M_RESET)
                    hard_reset(c->client);
                else
                    close(c->client);
                c->client = -1;
                break;
            }
            if (c->mode == M_BAD_LENGTH && !inflated) {
                n = inflate_length(buf, n, tmp, sizeof tmp);
                p = tmp;
                inflated = true;
            }
            if (write_all(c->client, p, n))
                break;
            sent += (long)n;
            if (c->mode == M_TRICKLE) {
                struct timespec ts = {0, c->arg > 0 ? 1000000000L / c->arg : 1000000000L};
                nanosleep(&ts, NULL);
            }
        }
    }
out:
    if (up >= 0)
        close(up);
    if (c->client >= 0)
        close(c->client);
    free(c);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:0", *ready = NULL, *target = NULL;
    struct proxy px = {.lock = PTHREAD_MUTEX_INITIALIZER};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--listen")) listen_at = argv[i + 1];
        else if (!strcmp(argv[i], "--ready-file")) ready = argv[i + 1];
        else if (!strcmp(argv[i], "--target")) target = argv[i + 1];
        else if (!strcmp(argv[i], "--mode-file")) px.mode_file = argv[i + 1];
        else if (!strcmp(argv[i], "--log")) px.log_file = argv[i + 1];
        else { fprintf(stderr, "faultproxy: unknown option %s\n", argv[i]); return 2; }
    }
    struct sockaddr_in la;
    if (!target || parse_hostport(target, &px.target) || parse_hostport(listen_at, &la)) {
        fprintf(stderr, "usage: faultproxy --target HOST:PORT [--listen 127.0.0.1:0] "
                        "[--ready-file F] [--mode-file M] [--log L]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&la, sizeof la) || listen(ls, 128)) {
        perror("faultproxy: listen");
        return 1;
    }
    socklen_t sl = sizeof la;
    getsockname(ls, (struct sockaddr *)&la, &sl);
    if (ready) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", ready);
        FILE *f = fopen(tmp, "w");
        if (!f) return 1;
        fprintf(f, "%u\n", ntohs(la.sin_port));
        fclose(f);
        rename(tmp, ready);
    }
    for (;;) {
        int cfd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("faultproxy: accept");
            return 1;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) { close(cfd); continue; }
        c->px = &px;
        c->client = cfd;
        read_mode(&px, &c->mode, &c->arg);
        pthread_t th;
        if (pthread_create(&th, NULL, serve, c)) { close(cfd); free(c); continue; }
        pthread_detach(th);
    }
}
