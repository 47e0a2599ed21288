// bench/floor/send_floor.c — what the kernel charges a sender for one body over loopback TCP.
//
// A sender thread on SENDER_CORE writes SIZE-byte bodies with send(2) to a loopback TCP socket
// whose peer, a thread on RECEIVER_CORE, drains it with recv(2); the sender's CPU time
// (getrusage RUSAGE_THREAD: user + system) over COUNT sends is the floor any server that
// copies a body into the socket pays per hit on this machine: the copy into socket buffers and
// the loopback TCP work the kernel does on the sender's core. Bodies come from a buffer pool
// many times the last-level cache ("cold", as a body just read from a disk) or from one hot
// buffer.
//
//   send_floor SIZE COUNT SENDER_CORE RECEIVER_CORE
//   prints: size_bytes=.. hot_us_per_send=.. cold_us_per_send=..
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int receiver_core;

static void pin(int core) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
}

static void *drain(void *arg) {
    int fd = *(int *)arg;
    pin(receiver_core);
    char *buf = malloc(1 << 20);
    while (recv(fd, buf, 1 << 20, 0) > 0) {
    }
    free(buf);
    return NULL;
}

static double thread_cpu_us(void) {
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

static double run(int fd, char *pool, size_t pool_bytes, size_t size, long count) {
    size_t slots = pool_bytes / size;
    double t0 = thread_cpu_us();
    for (long i = 0; i < count; i++) {
        char *p = pool + ((size_t)(i * 7919) % slots) * size;
        size_t off = 0;
        while (off < size) {
            ssize_t n = send(fd, p + off, size - off, 0);
            if (n <= 0) {
                perror("send");
                exit(1);
            }
            off += (size_t)n;
        }
    }
    return (thread_cpu_us() - t0) / count;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: send_floor SIZE COUNT SENDER_CORE RECEIVER_CORE\n");
        return 2;
    }
    size_t size = strtoul(argv[1], NULL, 10);
    long count = strtol(argv[2], NULL, 10);
    int sender_core = atoi(argv[3]);
    receiver_core = atoi(argv[4]);
    if (size == 0 || count <= 0) {
        fprintf(stderr, "send_floor: SIZE and COUNT must be positive\n");
        return 2;
    }
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al)) {
        perror("listen");
        return 1;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a)) {
        perror("connect");
        return 1;
    }
    int s = accept(l, NULL, NULL);
    pthread_t t;
    pthread_create(&t, NULL, drain, &c);
    pin(sender_core);
    // Cold: a pool of 512 MiB (well past any last-level cache), visited in a scattered order.
    size_t cold_bytes = (size_t)512 << 20;
    if (cold_bytes < size * 4) cold_bytes = size * 4;
    char *cold = mmap(NULL, cold_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *hot = malloc(size);
    if (cold == MAP_FAILED || hot == NULL) {
        perror("memory");
        return 1;
    }
    memset(cold, 7, cold_bytes);
    memset(hot, 7, size);
    run(s, hot, size, size, count / 10 + 1);  // warm the socket path
    double hot_us = run(s, hot, size, size, count);
    double cold_us = run(s, cold, cold_bytes, size, count);
    printf("size_bytes=%zu hot_us_per_send=%.1f cold_us_per_send=%.1f\n", size, hot_us, cold_us);
    shutdown(s, SHUT_RDWR);
    pthread_join(t, NULL);
    return 0;
}
