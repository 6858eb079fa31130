/* execl, execle and execlp take their arguments as a variadic list, which stable Rust cannot
 * define. Each collects the list into an array on the stack (no allocation, as exec may run
 * in a vfork child) and calls this library's execv, execve or execvp, which check the
 * program. glibc's own versions call its internal exec and would skip the check. */

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

extern char **environ;

/* Counts the arguments from first to the terminating null pointer, null excluded, or returns
 * -1 when there are more than an argv may hold. */
static ptrdiff_t count_arguments(const char *first, va_list list) {
    if (first == NULL) {
        return 0;
    }
    ptrdiff_t count = 1;
    while (va_arg(list, const char *) != NULL) {
        if (count == INT_MAX - 1) {
            return -1;
        }
        count++;
    }
    return count;
}

int execl(const char *path, const char *arg, ...) {
    va_list list;
    va_start(list, arg);
    ptrdiff_t count = count_arguments(arg, list);
    va_end(list);
    if (count < 0) {
        errno = E2BIG;
        return -1;
    }

    char *argv[count + 1];
    va_start(list, arg);
    argv[0] = (char *)arg;
    for (ptrdiff_t i = 1; i < count; i++) {
        argv[i] = va_arg(list, char *);
    }
    va_end(list);
    argv[count] = NULL;
    return execv(path, argv);
}

int execlp(const char *file, const char *arg, ...) {
    va_list list;
    va_start(list, arg);
    ptrdiff_t count = count_arguments(arg, list);
    va_end(list);
    if (count < 0) {
        errno = E2BIG;
        return -1;
    }

    char *argv[count + 1];
    va_start(list, arg);
    argv[0] = (char *)arg;
    for (ptrdiff_t i = 1; i < count; i++) {
        argv[i] = va_arg(list, char *);
    }
    va_end(list);
    argv[count] = NULL;
    return execvp(file, argv);
}

/* The environment follows the null pointer that ends the arguments. */
int execle(const char *path, const char *arg, ...) {
    va_list list;
    va_start(list, arg);
    ptrdiff_t count = count_arguments(arg, list);
    va_end(list);
    if (count < 0) {
        errno = E2BIG;
        return -1;
    }

    char *argv[count + 1];
    va_start(list, arg);
    argv[0] = (char *)arg;
    for (ptrdiff_t i = 1; i < count; i++) {
        argv[i] = va_arg(list, char *);
    }
    if (count > 0) {
        /* The null pointer that ends the arguments. */
        (void)va_arg(list, char *);
    }
    char *const *envp = va_arg(list, char *const *);
    va_end(list);
    argv[count] = NULL;
    return execve(path, argv, envp);
}
