/* A lab client written from seed 000's text alone: it reads the gateway's
 * address and port from the keyboard, asks it for a server (message A),
 * connects to the server it is given (message B), then reads a string from
 * the keyboard, sends it, reads the response and prints it, until EOF. */
#include <arpa/inet.h>
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

int main(void) {
    char gw_address[64];
    int gw_port;
    if (scanf("%63s %d", gw_address, &gw_port) != 2) return 2;
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in gw = {0};
    gw.sin_family = AF_INET;
    gw.sin_port = htons(gw_port);
    inet_aton(gw_address, &gw.sin_addr);
    message_gw m;
    memset(&m, 0, sizeof m);
    m.type = 0;
    sendto(udp, &m, sizeof m, 0, (struct sockaddr *)&gw, sizeof gw);
    if (recv(udp, &m, sizeof m, 0) != sizeof m) return 3;
    if (m.type == 0) {
        printf("no server available\n");
        return 1;
    }
    printf("server %s %d\n", m.address, m.port);
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in server = {0};
    server.sin_family = AF_INET;
    server.sin_port = htons(m.port);
    inet_aton(m.address, &server.sin_addr);
    if (connect(tcp, (struct sockaddr *)&server, sizeof server) != 0) return 4;
    char line[100];
    getchar(); /* the newline after the port */
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        send(tcp, line, strlen(line) + 1, 0);
        char reply[101];
        ssize_t n = recv(tcp, reply, 100, 0);
        if (n <= 0) break;
        reply[n] = '\0';
        printf("reply %s", reply);
        if (n == 0 || reply[n - 1] != '\n') printf("\n");
        fflush(stdout);
    }
    close(tcp);
    return 0;
}
