/*
 * libFuzzer target: sandlot-init's frame parser, under AddressSanitizer and UBSan.
 *
 * Built by `python -m fuzz` (fuzz/__main__.py) with
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined fuzz/init_frames.c
 *
 * The PID 1 source (init.c, the whole program but `main`, which is main.c's) is included
 * rather than linked, so that this file reaches its static parser (`conn_process` and below)
 * and init.c itself needs no fuzzing hook. Two names are renamed on the way in, `fork` and
 * `kill`, so that a fuzzed SPAWN never starts a real program and a fuzzed SIGNAL never reaches
 * a real process. Everything else runs as in a sandbox: SPAWN looks the user up in
 * /etc/passwd, makes real pipes or a PTY and gets a process record; ATTACH turns the
 * connection into a stream.
 *
 * One input is the byte stream a client sends on one connection, fed to the parser in small
 * pieces so that frames arrive split, as they do from a socket. It starts unauthenticated; the
 * token is FUZZ_TOKEN, so the seeds begin with a HELLO frame carrying it.
 */
#define fork fuzz_fork
#define kill fuzz_kill
#include "../sandlot/runtime/init/init.c"
#undef fork
#undef kill

#define FUZZ_TOKEN "fuzz-token"
#define FEED 13 /* bytes per read: odd, so that frames straddle reads */

static pid_t next_pid;

/* A child that "exec'd" at once: the parent sees EOF on the report pipe, as after a real exec. */
pid_t fuzz_fork(void)
{
    return next_pid++;
}

/* Signals go to the fake pids only (as a process group, -pid, or alone). */
int fuzz_kill(pid_t pid, int sig)
{
    if (sig < 0 || sig >= NSIG) {
        errno = EINVAL;
        return -1;
    }
    if (proc_find((uint32_t)(pid < 0 ? -pid : pid)) == NULL) {
        errno = ESRCH;
        return -1;
    }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    signal(SIGPIPE, SIG_IGN); /* stdin writes to pipes nobody reads, as init does */
    token_len = strlen(FUZZ_TOKEN);
    memcpy(token, FUZZ_TOKEN, token_len);
    devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    return 0;
}

/* What the poll loop would do for a held-back connection: the peer and the process read. */
static void drain(struct conn *c)
{
    buf_free(&c->out);
    for (int i = 0; i < nprocs; i++)
        buf_free(&procs[i]->inq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conn c = {.fd = -1, .state = C_HELLO};
    next_pid = 2;
    for (size_t off = 0; off < size && !c.dead && !c.closing; off += FEED) {
        size_t n = size - off < FEED ? size - off : FEED;
        buf_append(&c.in, data + off, n);
        while (conn_process(&c))
            drain(&c);
    }
    c.eof = 1;
    conn_process(&c);
    stream_detach(&c);
    buf_free(&c.in);
    buf_free(&c.out);
    while (nprocs > 0)
        proc_free(procs[0]);
    return 0;
}
