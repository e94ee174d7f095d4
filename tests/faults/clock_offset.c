/*
 * A wall-clock offset for one process, stepped from outside while it runs.
 *
 * Loaded with LD_PRELOAD, it adds an offset to CLOCK_REALTIME (and its coarse variant) as
 * clock_gettime, gettimeofday and time report it: the process sees its wall clock step as
 * an NTP correction or a restored VM would step it. Monotonic clocks, sleeps, timed waits
 * and file times are left alone, as a real step leaves them.
 *
 * The offset is a whole number of seconds (e.g. "-120") in the file named by
 * CLOCK_OFFSET_FILE. It is read at most every 20 ms, by one thread at a time; an empty or
 * unreadable file keeps the offset last read, so a writer should replace the file whole.
 *
 * The fault tests use this in place of libfaketime: Debian 12's libfaketime 0.9.10 also
 * intercepts sleeps, condition waits and stat(), and with Python 3.11 its sleep
 * interception is wrong (time.sleep fails with EINVAL when monotonic time is left alone;
 * threading waits hang when it is faked).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL
#define REREAD_NS (20 * 1000000LL)

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static _Atomic(clock_gettime_fn) real_clock_gettime_ptr;
static _Atomic long long offset_s;
static _Atomic long long next_read_ns;

static clock_gettime_fn real_clock_gettime(void)
{
    clock_gettime_fn fn = atomic_load(&real_clock_gettime_ptr);
    if (fn == NULL) {
        fn = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
        atomic_store(&real_clock_gettime_ptr, fn);
    }
    return fn;
}

static void refresh_offset(void)
{
    const char *path = getenv("CLOCK_OFFSET_FILE");
    struct timespec mono;
    if (path == NULL || real_clock_gettime()(CLOCK_MONOTONIC, &mono) != 0)
        return;
    long long now = mono.tv_sec * NS_PER_S + mono.tv_nsec;
    long long due = atomic_load(&next_read_ns);
    if (now < due || !atomic_compare_exchange_strong(&next_read_ns, &due, now + REREAD_NS))
        return; /* read recently, or another thread is reading it now */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char text[32];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return;
    text[n] = '\0';
    char *end;
    long long seconds = strtoll(text, &end, 10);
    if (end != text)
        atomic_store(&offset_s, seconds);
}

static int stepped(clockid_t clock, struct timespec *tp)
{
    int result = real_clock_gettime()(clock, tp);
    if (result == 0 && tp != NULL && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        refresh_offset();
        tp->tv_sec += atomic_load(&offset_s);
    }
    return result;
}

int clock_gettime(clockid_t clock, struct timespec *tp)
{
    return stepped(clock, tp);
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    (void)tz;
    struct timespec now;
    int result = stepped(CLOCK_REALTIME, &now);
    struct timeval *volatile out = tv; /* declared nonnull, yet NULL is accepted */
    if (result == 0 && out != NULL) {
        out->tv_sec = now.tv_sec;
        out->tv_usec = now.tv_nsec / 1000;
    }
    return result;
}

time_t time(time_t *out)
{
    struct timespec now;
    if (stepped(CLOCK_REALTIME, &now) != 0)
        return (time_t)-1;
    if (out != NULL)
        *out = now.tv_sec;
    return now.tv_sec;
}
