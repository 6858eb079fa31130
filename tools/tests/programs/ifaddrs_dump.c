/* Prints what getifaddrs returns, one entry a line, then what if_nameindex returns and
 * what if_nametoindex and if_indextoname return for each name, and frees both lists with
 * freeifaddrs and if_freenameindex. Fields: name, flags in hex, then
 *   packet INDEX HATYPE ADDRESS BROADCAST stats|nostats   for AF_PACKET,
 *   inet|inet6 ADDRESS[%SCOPE] NETMASK BROADCAST-OR-PEER  for AF_INET and AF_INET6,
 * with "-" for an absent address. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static void print_link_address(const struct sockaddr *address) {
    if (address == NULL) {
        printf(" -");
        return;
    }
    const struct sockaddr_ll *link = (const struct sockaddr_ll *)address;
    printf(" ");
    for (int i = 0; i < link->sll_halen; i++) {
        printf("%s%02x", i == 0 ? "" : ":", link->sll_addr[i]);
    }
    if (link->sll_halen == 0) {
        printf("none");
    }
}

static void print_ip_address(const struct sockaddr *address, int with_scope) {
    char text[INET6_ADDRSTRLEN];
    if (address == NULL) {
        printf(" -");
        return;
    }
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)address;
        printf(" %s", inet_ntop(AF_INET, &in->sin_addr, text, sizeof text));
    } else if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        printf(" %s", inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text));
        if (with_scope && in6->sin6_scope_id != 0) {
            printf("%%%u", in6->sin6_scope_id);
        }
    } else {
        printf(" family%d", address->sa_family);
    }
}

int main(void) {
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0) {
        perror("getifaddrs");
        return 1;
    }
    for (struct ifaddrs *entry = list; entry != NULL; entry = entry->ifa_next) {
        printf("%s %#x", entry->ifa_name, entry->ifa_flags);
        if (entry->ifa_addr == NULL) {
            printf(" noaddress\n");
            continue;
        }
        switch (entry->ifa_addr->sa_family) {
        case AF_PACKET: {
            const struct sockaddr_ll *link = (const struct sockaddr_ll *)entry->ifa_addr;
            printf(" packet %d %u", link->sll_ifindex, link->sll_hatype);
            print_link_address(entry->ifa_addr);
            print_link_address(entry->ifa_broadaddr);
            printf(" %s\n", entry->ifa_data != NULL ? "stats" : "nostats");
            break;
        }
        case AF_INET:
        case AF_INET6:
            printf(" %s", entry->ifa_addr->sa_family == AF_INET ? "inet" : "inet6");
            print_ip_address(entry->ifa_addr, 1);
            print_ip_address(entry->ifa_netmask, 0);
            print_ip_address(entry->ifa_broadaddr, 0);
            printf("\n");
            break;
        default:
            printf(" family%d\n", entry->ifa_addr->sa_family);
        }
    }
    freeifaddrs(list);

    struct if_nameindex *names = if_nameindex();
    if (names == NULL) {
        perror("if_nameindex");
        return 1;
    }
    for (struct if_nameindex *name = names; name->if_index != 0; name++) {
        char back[IF_NAMESIZE];
        const char *found = if_indextoname(name->if_index, back);
        printf("index %u %s nametoindex %u indextoname %s\n", name->if_index, name->if_name,
               if_nametoindex(name->if_name), found != NULL ? found : "-");
    }
    if_freenameindex(names);
    printf("nametoindex missing %u\n", if_nametoindex("netcon-missing0"));
    return 0;
}
