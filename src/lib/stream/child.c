/*
 * What the exec and pool responders share about child processes: starting `/bin/sh -c CMD` in a
 * session of its own (so its pid is its process group, and a kill reaches whatever the shell
 * started) with three pipes, signalling that group, and logging its stderr line by line.
 */
#include "stream/stream.h"

#include <signal.h>

int hsc_child_spawn(uv_loop_t *loop, uv_process_t *proc, uv_pipe_t *in, uv_pipe_t *out,
                    uv_pipe_t *err, const char *cmd, char **env, uv_exit_cb exit_cb)
{
    uv_pipe_init(loop, in, 0);
    uv_pipe_init(loop, out, 0);
    uv_pipe_init(loop, err, 0);
    char *args[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)err},
    };
    uv_process_options_t opts = {
        .exit_cb = exit_cb,
        .file = args[0],
        .args = args,
        .env = env,
        .flags = UV_PROCESS_DETACHED, /* setsid(): the pid is also the process group */
        .stdio_count = 3,
        .stdio = stdio,
    };
    return uv_spawn(loop, proc, &opts);
}

void hsc_child_signal(int pgid, int sig, bool leader_alive)
{
    if (pgid > 0 && uv_kill(-pgid, sig) != 0 && leader_alive)
        uv_kill(pgid, sig);
}

void hsc_lines_feed(hsc_lines_t *l, const char *prefix, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n' && l->len < sizeof l->line)
            l->line[l->len++] = p[i];
        if (p[i] == '\n' || l->len == sizeof l->line)
            hsc_lines_flush(l, prefix);
    }
}

void hsc_lines_flush(hsc_lines_t *l, const char *prefix)
{
    if (l->len > 0)
        HSC_LOG(HSC_LOG_NOTICE, "%s: stderr: %.*s", prefix, (int)l->len, l->line);
    l->len = 0;
}
