/* Starts PROGRAM [ARG...] with the libc function MODE names, as programs do:
 *   execl execle execlp execv execve execvp execvpe execveat syscall fexecve fexecve-opath
 *     replace this process; when the call fails, prints "failed ERRNO" (e.g. EACCES).
 *   vfork    vfork, then execv in the child; prints "failed ERRNO" or "exit STATUS".
 *   posix_spawn posix_spawnp
 *            print "failed ERRNO" when the call fails, else "exit STATUS" of the child.
 *   system popen
 *            run PROGRAM ARG... joined by spaces as a shell command; popen copies the
 *            command's output, then both print "exit STATUS" (or "failed ERRNO").
 * The execl family takes at most seven arguments after PROGRAM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *errno_name(int error) {
    switch (error) {
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ENOEXEC: return "ENOEXEC";
    case E2BIG: return "E2BIG";
    case EFAULT: return "EFAULT";
    default: return strerror(error);
    }
}

static int report_failure(int error) {
    printf("failed %s\n", errno_name(error));
    return 1;
}

static int report_status(int status) {
    if (WIFEXITED(status)) {
        printf("exit %d\n", WEXITSTATUS(status));
    } else {
        printf("signal %d\n", WTERMSIG(status));
    }
    return 0;
}

/* Returns ARGV joined by spaces, for system and popen. */
static char *join(char **argv) {
    size_t len = 1;
    for (char **arg = argv; *arg != NULL; arg++) {
        len += strlen(*arg) + 1;
    }
    char *command = calloc(len, 1);
    for (char **arg = argv; *arg != NULL; arg++) {
        if (arg != argv) {
            strcat(command, " ");
        }
        strcat(command, *arg);
    }
    return command;
}

/* Errno of a vfork child's failed execv: the child shares this process's memory. */
static volatile int child_errno;

static int run_vfork(char **argv) {
    child_errno = 0;
    pid_t pid = vfork();
    if (pid == 0) {
        execv(argv[0], argv);
        child_errno = errno;
        _exit(127);
    }
    if (pid < 0) {
        return report_failure(errno);
    }
    int status;
    waitpid(pid, &status, 0);
    if (child_errno != 0) {
        return report_failure(child_errno);
    }
    return report_status(status);
}

static int run_spawn(int search, char **argv) {
    pid_t pid;
    int error = search ? posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ)
                       : posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    if (error != 0) {
        return report_failure(error);
    }
    int status;
    waitpid(pid, &status, 0);
    return report_status(status);
}

static int run_popen(char **argv) {
    FILE *output = popen(join(argv), "r");
    if (output == NULL) {
        return report_failure(errno);
    }
    char buffer[4096];
    size_t read;
    while ((read = fread(buffer, 1, sizeof buffer, output)) > 0) {
        fwrite(buffer, 1, read, stdout);
    }
    return report_status(pclose(output));
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE PROGRAM [ARG...]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    char **child = argv + 2;
    const char *path = child[0];
    /* The execl family's arguments, padded with null pointers. */
    char *a[7] = {NULL};
    for (int i = 0; i < 7 && 3 + i < argc; i++) {
        a[i] = argv[3 + i];
    }
    setvbuf(stdout, NULL, _IONBF, 0);

    if (strcmp(mode, "execl") == 0) {
        execl(path, path, a[0], a[1], a[2], a[3], a[4], a[5], a[6], (char *)NULL);
    } else if (strcmp(mode, "execle") == 0) {
        /* The environment follows the null pointer that ends the arguments. */
        switch (argc - 3) {
        case 0: execle(path, path, (char *)NULL, environ); break;
        case 1: execle(path, path, a[0], (char *)NULL, environ); break;
        case 2: execle(path, path, a[0], a[1], (char *)NULL, environ); break;
        case 3: execle(path, path, a[0], a[1], a[2], (char *)NULL, environ); break;
        case 4: execle(path, path, a[0], a[1], a[2], a[3], (char *)NULL, environ); break;
        case 5: execle(path, path, a[0], a[1], a[2], a[3], a[4], (char *)NULL, environ); break;
        case 6:
            execle(path, path, a[0], a[1], a[2], a[3], a[4], a[5], (char *)NULL, environ);
            break;
        default:
            execle(path, path, a[0], a[1], a[2], a[3], a[4], a[5], a[6], (char *)NULL, environ);
            break;
        }
    } else if (strcmp(mode, "execlp") == 0) {
        execlp(path, path, a[0], a[1], a[2], a[3], a[4], a[5], a[6], (char *)NULL);
    } else if (strcmp(mode, "execv") == 0) {
        execv(path, child);
    } else if (strcmp(mode, "execve") == 0) {
        execve(path, child, environ);
    } else if (strcmp(mode, "execvp") == 0) {
        execvp(path, child);
    } else if (strcmp(mode, "execvpe") == 0) {
        execvpe(path, child, environ);
    } else if (strcmp(mode, "execveat") == 0) {
        execveat(AT_FDCWD, path, child, environ, 0);
    } else if (strcmp(mode, "syscall") == 0) {
        syscall(SYS_execve, path, child, environ);
    } else if (strcmp(mode, "fexecve") == 0 || strcmp(mode, "fexecve-opath") == 0) {
        int flags = strcmp(mode, "fexecve") == 0 ? O_RDONLY : O_PATH;
        int fd = open(path, flags | O_CLOEXEC);
        if (fd < 0) {
            return report_failure(errno);
        }
        fexecve(fd, child, environ);
    } else if (strcmp(mode, "vfork") == 0) {
        return run_vfork(child);
    } else if (strcmp(mode, "posix_spawn") == 0 || strcmp(mode, "posix_spawnp") == 0) {
        return run_spawn(strcmp(mode, "posix_spawnp") == 0, child);
    } else if (strcmp(mode, "system") == 0) {
        int status = system(join(child));
        if (status < 0) {
            return report_failure(errno);
        }
        return report_status(status);
    } else if (strcmp(mode, "popen") == 0) {
        return run_popen(child);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return report_failure(errno);
}
