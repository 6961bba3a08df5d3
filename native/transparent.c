/*
 * cstp_transparent: the two socket operations Node has no API for, for the inline bridge.
 *
 *   listen(host, port, backlog) -> fd
 *     A listening TCP socket with IP_TRANSPARENT (IPV6_TRANSPARENT), so connections the kernel diverts with
 *     TPROXY are accepted; their local address is the original destination. For use with
 *     net.Server.listen({ fd }) when no systemd socket unit (Transparent=yes) hands one over.
 *
 *   connect(source, host, port, callback(errno, fd))
 *     A TCP connection to host:port whose source address is `source` (the client's, not ours): IP_TRANSPARENT,
 *     bind(source, 0), non-blocking connect. The callback runs once the connection is up (errno 0, fd) or has
 *     failed (errno, -1); the descriptor is then wrapped with new net.Socket({ fd }). Completion is awaited here
 *     with a libuv poll that is closed before the callback, so Node's own handle can take the descriptor over.
 *
 *   close(fd)
 *     Closes a descriptor the caller no longer wants (a connection that completed after its timeout).
 *
 * IP_TRANSPARENT needs CAP_NET_RAW or CAP_NET_ADMIN; without them listen/connect fail with EPERM and the caller
 * falls back to ordinary sockets. Errors are reported as errno values, named on the JavaScript side.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

#define CHECK(call)                                                                                                  \
  do {                                                                                                               \
    if ((call) != napi_ok) return NULL;                                                                              \
  } while (0)

typedef union {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
} address;

/* Parses an IPv4 or IPv6 literal; 0 on success. */
static int parse_address(const char *text, int port, address *out, socklen_t *len) {
  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET, text, &out->in4.sin_addr) == 1) {
    out->in4.sin_family = AF_INET;
    out->in4.sin_port = htons((uint16_t)port);
    *len = sizeof(out->in4);
    return 0;
  }
  if (inet_pton(AF_INET6, text, &out->in6.sin6_addr) == 1) {
    out->in6.sin6_family = AF_INET6;
    out->in6.sin6_port = htons((uint16_t)port);
    *len = sizeof(out->in6);
    return 0;
  }
  return EINVAL;
}

/* A socket of the address's family with the transparent option set; -errno on failure. */
static int transparent_socket(const address *addr, int nonblocking) {
  int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -errno;
  int on = 1;
  int rc = addr->sa.sa_family == AF_INET ? setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof(on))
                                         : setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof(on));
  if (rc != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

static napi_value number(napi_env env, int value) {
  napi_value result;
  CHECK(napi_create_int32(env, value, &result));
  return result;
}

/* Reads argument i as a string into buf; 0 on success. */
static int string_arg(napi_env env, napi_value value, char *buf, size_t size) {
  size_t copied;
  return napi_get_value_string_utf8(env, value, buf, size, &copied) == napi_ok ? 0 : EINVAL;
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char code[32];
  snprintf(code, sizeof(code), "%d", err);
  char message[256];
  snprintf(message, sizeof(message), "%s: %s", what, strerror(err));
  napi_throw_error(env, code, message);
  return NULL;
}

static napi_value js_listen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char host[INET6_ADDRSTRLEN + 1];
  int32_t port = 0, backlog = 511;
  if (argc < 2 || string_arg(env, argv[0], host, sizeof(host)) != 0 || napi_get_value_int32(env, argv[1], &port) != napi_ok)
    return throw_errno(env, "listen(host, port, backlog)", EINVAL);
  if (argc > 2) napi_get_value_int32(env, argv[2], &backlog);
  address addr;
  socklen_t len;
  if (parse_address(host, port, &addr, &len) != 0) return throw_errno(env, "listen: not an IP address", EINVAL);
  int fd = transparent_socket(&addr, 0);
  if (fd < 0) return throw_errno(env, "IP_TRANSPARENT listening socket", -fd);
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (bind(fd, &addr.sa, len) != 0 || listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind/listen", err);
  }
  return number(env, fd);
}

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  int fd;
  int error;
} pending_connect;

static void finish_connect(uv_handle_t *handle) {
  pending_connect *p = (pending_connect *)handle->data;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value callback, recv, args[2];
    if (napi_get_reference_value(env, p->callback, &callback) == napi_ok && napi_get_global(env, &recv) == napi_ok) {
      napi_create_int32(env, p->error, &args[0]);
      napi_create_int32(env, p->error ? -1 : p->fd, &args[1]);
      napi_make_callback(env, p->context, recv, callback, 2, args, NULL);
    }
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, p->callback);
  napi_async_destroy(env, p->context);
  free(p);
}

static void on_writable(uv_poll_t *poll, int status, int events) {
  (void)events;
  pending_connect *p = (pending_connect *)poll->data;
  int err = 0;
  socklen_t len = sizeof(err);
  /* libuv reports POLLERR as UV_EBADF; the socket itself knows the real reason (ECONNREFUSED...). */
  if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0 && status < 0) err = -status;
  if (err == EINPROGRESS || err == EALREADY) return; /* spurious wake-up */
  if (err != 0) {
    close(p->fd);
    p->fd = -1;
  }
  p->error = err;
  uv_poll_stop(poll);
  /* The callback runs from the close callback, when libuv no longer watches the descriptor. */
  uv_close((uv_handle_t *)poll, finish_connect);
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char source[INET6_ADDRSTRLEN + 1], host[INET6_ADDRSTRLEN + 1];
  int32_t port = 0;
  napi_valuetype type = napi_undefined;
  if (argc < 4 || string_arg(env, argv[0], source, sizeof(source)) != 0 || string_arg(env, argv[1], host, sizeof(host)) != 0 ||
      napi_get_value_int32(env, argv[2], &port) != napi_ok || napi_typeof(env, argv[3], &type) != napi_ok || type != napi_function)
    return throw_errno(env, "connect(source, host, port, callback)", EINVAL);
  address from, to;
  socklen_t from_len, to_len;
  if (parse_address(source, 0, &from, &from_len) != 0 || parse_address(host, port, &to, &to_len) != 0)
    return throw_errno(env, "connect: not an IP address", EINVAL);
  if (from.sa.sa_family != to.sa.sa_family) return throw_errno(env, "connect: source and destination families differ", EAFNOSUPPORT);
  int fd = transparent_socket(&from, 1);
  if (fd < 0) return throw_errno(env, "IP_TRANSPARENT connecting socket", -fd);
  /* The source port is then chosen at connect() for the whole 4-tuple, as for any client socket: bind(addr, 0)
     alone picks it blind, and can reuse one the destination still holds in TIME_WAIT. */
  int on = 1;
  setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on));
  if (bind(fd, &from.sa, from_len) != 0 || (connect(fd, &to.sa, to_len) != 0 && errno != EINPROGRESS)) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind/connect", err);
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  pending_connect *p = calloc(1, sizeof(*p));
  if (!p) {
    close(fd);
    return throw_errno(env, "connect", ENOMEM);
  }
  p->env = env;
  p->fd = fd;
  napi_value name;
  napi_create_string_utf8(env, "cstp_transparent.connect", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[3], 1, &p->callback) != napi_ok || napi_async_init(env, NULL, name, &p->context) != napi_ok ||
      uv_poll_init(loop, &p->poll, fd) != 0) {
    close(fd);
    free(p);
    return throw_errno(env, "connect: event loop", EIO);
  }
  p->poll.data = p;
  uv_poll_start(&p->poll, UV_WRITABLE, on_writable);
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc == 1 && napi_get_value_int32(env, argv[0], &fd) == napi_ok && fd > 2) close(fd);
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listen", NULL, js_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
