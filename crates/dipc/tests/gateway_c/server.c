/* A lab server written from seed 000's text alone: it announces its
 * address to the gateway (message 1, the address field left as zeros, as
 * many lab servers do), then prints each message it receives and sends it
 * back in UPPER CASE. Usage: server <gateway port> <tcp port>. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct message_gw {
    int type;
    char address[20];
    int port;
} message_gw;

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int port = atoi(argv[2]);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in local = {0};
    local.sin_family = AF_INET;
    local.sin_port = htons(port);
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&local, sizeof local) != 0) return 3;
    listen(listener, 5);

    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in gw = {0};
    gw.sin_family = AF_INET;
    gw.sin_port = htons(atoi(argv[1]));
    inet_aton("127.0.0.1", &gw.sin_addr);
    message_gw m;
    memset(&m, 0, sizeof m);
    m.type = 1;
    m.port = port;
    sendto(udp, &m, sizeof m, 0, (struct sockaddr *)&gw, sizeof gw);
    printf("announced %d\n", port);
    fflush(stdout);

    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        char buf[100];
        ssize_t n;
        while ((n = recv(client, buf, sizeof buf, 0)) > 0) {
            printf("%.*s\n", (int)n, buf);
            fflush(stdout);
            for (ssize_t i = 0; i < n; i++) buf[i] = toupper((unsigned char)buf[i]);
            send(client, buf, n, 0);
        }
        close(client);
    }
}
