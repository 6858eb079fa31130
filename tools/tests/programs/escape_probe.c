/* Connects to ADDRESS:PORT with the raw socket and connect system calls, which the netcon
 * preload does not intercept, and prints "connected" or the errno's name. With "libc" as the
 * third argument it calls libc's socket and connect instead. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *errno_name(int error) {
    switch (error) {
    case ENETUNREACH: return "ENETUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ENETDOWN: return "ENETDOWN";
    default: return strerror(error);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ADDRESS PORT [libc]\n", argv[0]);
        return 2;
    }
    int use_libc = argc > 3 && strcmp(argv[3], "libc") == 0;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
        fprintf(stderr, "invalid address %s\n", argv[1]);
        return 2;
    }
    long fd = use_libc ? socket(AF_INET, SOCK_STREAM, 0)
                       : syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        printf("socket %s\n", errno_name(errno));
        return 0;
    }
    long result = use_libc ? connect(fd, (struct sockaddr *)&address, sizeof address)
                           : syscall(SYS_connect, fd, &address, sizeof address);
    printf("%s\n", result == 0 ? "connected" : errno_name(errno));
    return 0;
}
