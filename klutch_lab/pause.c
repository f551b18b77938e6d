/* Copyright: klutch.bind contributors
 * GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
 *
 * The lab's pause program, the process that holds a Pod sandbox's namespaces: it sleeps until
 * SIGTERM or SIGINT and exits 0, and as PID 1 of a shared PID namespace it reaps orphans. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signum)
{
    (void)signum;
    _exit(0);
}

static void reap(int signum)
{
    (void)signum;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static void handle(int signum, void (*handler)(int), int flags)
{
    struct sigaction action = {.sa_handler = handler, .sa_flags = flags};
    sigemptyset(&action.sa_mask);
    sigaction(signum, &action, NULL);
}

int main(void)
{
    handle(SIGTERM, stop, 0);
    handle(SIGINT, stop, 0);
    handle(SIGCHLD, reap, SA_NOCLDSTOP);
    for (;;) {
        pause();
    }
}
