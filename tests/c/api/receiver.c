/* The receiver: HTTP/1.1 keep-alive on 127.0.0.1, answers 200 with Content-Length: 0, and
   counts the envelopes of what it answered by their "seq" (duplicates and malformed requests
   apart). Runs on its own thread from rx_start to rx_stop. */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#define RX_MAX_SEQ (1u << 20)
#define RX_MAX_HEADER 65536u
#define RX_MAX_BUF (32u << 20)
/* The receiver closes a connection after this many answers, as servers close idle
   keep-alive connections: the library's next write on it must neither fail the batch nor
   raise SIGPIPE. */
#define RX_CLOSE_EVERY 4u

receiver g_rx;

static void rx_close(rx_conn *c) {
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->buf);
    c->fd = -1;
    c->buf = NULL;
    c->len = c->cap = 0;
    c->served = 0;
}

static int rx_send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Counts the envelopes of one body by their "seq": keys, noting duplicates. */
static void rx_count(receiver *rx, const char *body, size_t n) {
    static const char key[] = "\"seq\":";
    const size_t klen = sizeof key - 1;
    size_t i = 0;
    while (i + klen <= n) {
        const char *hit = (const char *)memmem(body + i, n - i, key, klen);
        if (hit == NULL) {
            break;
        }
        size_t j = (size_t)(hit - body) + klen;
        uint64_t seq = 0;
        int digits = 0;
        while (j < n && body[j] >= '0' && body[j] <= '9' && digits < 19) {
            seq = seq * 10u + (uint64_t)(body[j] - '0');
            j++;
            digits++;
        }
        ADD(&rx->envelopes, 1);
        if (digits == 0 || seq == 0 || seq >= RX_MAX_SEQ) {
            ADD(&rx->bad, 1);
        } else if (rx->seen[seq]) {
            ADD(&rx->duplicates, 1);
        } else {
            rx->seen[seq] = 1;
        }
        i = j;
    }
}

/* Serves every complete request in c->buf. Returns -1 when the connection is to be closed. */
static int rx_serve(receiver *rx, rx_conn *c) {
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (;;) {
        const char *end = (const char *)memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end == NULL) {
            if (c->len > RX_MAX_HEADER) {
                ADD(&rx->bad, 1);
                return -1;
            }
            return 0;
        }
        size_t hlen = (size_t)(end - c->buf) + 4;
        char *h = (char *)malloc(hlen + 1);
        if (h == NULL) {
            return -1;
        }
        for (size_t i = 0; i < hlen; i++) {
            char ch = c->buf[i];
            h[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
        h[hlen] = '\0';
        const char *cl = strstr(h, "\r\ncontent-length:");
        int chunked = strstr(h, "\r\ntransfer-encoding:") != NULL;
        int expect = strstr(h, "\r\nexpect:") != NULL;
        int post = strncmp(h, "post ", 5) == 0;
        unsigned long long clen = cl != NULL ? strtoull(cl + 17, NULL, 10) : 0;
        free(h);
        if (!post || cl == NULL || chunked || expect || clen > RX_MAX_BUF) {
            ADD(&rx->bad, 1);
            return -1;
        }
        if (c->len < hlen + (size_t)clen) {
            return 0;
        }
        rx_count(rx, c->buf + hlen, (size_t)clen);
        ADD(&rx->requests, 1);
        if (rx_send_all(c->fd, ok, sizeof ok - 1) != 0) {
            return -1;
        }
        size_t used = hlen + (size_t)clen;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        c->served++;
        if (c->served % RX_CLOSE_EVERY == 0) {
            return -1;
        }
    }
}

static void *rx_main(void *arg) {
    receiver *rx = (receiver *)arg;
    struct pollfd fds[RX_MAX_CONNS + 1];
    int idx[RX_MAX_CONNS + 1];
    while (!LOAD(&rx->stop)) {
        nfds_t n = 0;
        fds[n].fd = rx->listen_fd;
        fds[n].events = POLLIN;
        fds[n].revents = 0;
        idx[n++] = -1;
        for (int i = 0; i < RX_MAX_CONNS; i++) {
            if (rx->conns[i].fd >= 0) {
                fds[n].fd = rx->conns[i].fd;
                fds[n].events = POLLIN;
                fds[n].revents = 0;
                idx[n++] = i;
            }
        }
        int r = poll(fds, n, 50);
        if (r <= 0) {
            continue;
        }
        if (fds[0].revents & POLLIN) {
            int fd = accept4(rx->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                int slot = -1;
                for (int i = 0; i < RX_MAX_CONNS; i++) {
                    if (rx->conns[i].fd < 0) {
                        slot = i;
                        break;
                    }
                }
                if (slot < 0) {
                    close(fd);
                } else {
                    struct timeval tv;
                    tv.tv_sec = 2;
                    tv.tv_usec = 0;
                    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                    rx->conns[slot].fd = fd;
                }
            }
        }
        for (nfds_t k = 1; k < n; k++) {
            if ((fds[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                continue;
            }
            rx_conn *c = &rx->conns[idx[k]];
            if (c->cap - c->len < 65536) {
                size_t ncap = c->cap == 0 ? 131072 : c->cap * 2;
                char *nb = ncap <= RX_MAX_BUF ? (char *)realloc(c->buf, ncap) : NULL;
                if (nb == NULL) {
                    ADD(&rx->bad, 1);
                    rx_close(c);
                    continue;
                }
                c->buf = nb;
                c->cap = ncap;
            }
            ssize_t got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
                continue;
            }
            if (got <= 0) {
                rx_close(c);
                continue;
            }
            c->len += (size_t)got;
            if (rx_serve(rx, c) != 0) {
                rx_close(c);
            }
        }
    }
    for (int i = 0; i < RX_MAX_CONNS; i++) {
        rx_close(&rx->conns[i]);
    }
    return NULL;
}

void rx_start(receiver *rx) {
    memset(rx, 0, sizeof *rx);
    for (int i = 0; i < RX_MAX_CONNS; i++) {
        rx->conns[i].fd = -1;
    }
    rx->seen = (unsigned char *)calloc(RX_MAX_SEQ, 1);
    if (rx->seen == NULL) {
        DIE("calloc");
    }
    rx->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rx->listen_fd < 0) {
        DIE("socket");
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t alen = sizeof a;
    if (bind(rx->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(rx->listen_fd, 64) != 0 ||
        getsockname(rx->listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        DIE("bind/listen");
    }
    rx->port = ntohs(a.sin_port);
    if (pthread_create(&rx->thread, NULL, rx_main, rx) != 0) {
        DIE("pthread_create (receiver)");
    }
}

void rx_stop(receiver *rx) {
    STORE(&rx->stop, 1);
    pthread_join(rx->thread, NULL);
    close(rx->listen_fd);
    free(rx->seen);
    rx->seen = NULL;
}
