// Native helper of the Node agent (a Node-API addon): the three things a restored clone must do that
// Node's own API cannot: step the wall clock, make the kernel CRNG reseed now, and reseed OpenSSL's DRBGs;
// and mounting the task disk (a function's package) read-only.
// Built on the host at image build time (gcc -shared); OpenSSL's symbols come from the node binary itself,
// which exports them for addons.
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>
#include <node_api.h>

// OpenSSL 3 (rand.h): with an entropy source, the buffer becomes additional input to a reseed of the
// primary DRBG, which pulls fresh entropy from getrandom(); every per-thread child DRBG sees the primary's
// reseed counter change and reseeds itself before its next output.
extern void RAND_add(const void *buf, int num, double randomness);

static napi_value fail(napi_env env, const char *what, int error) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(error));
  napi_throw_error(env, NULL, message);
  return NULL;
}

static int args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "missing argument");
    return 0;
  }
  return 1;
}

static int set_realtime_us(int64_t us) {
  struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
  return clock_settime(CLOCK_REALTIME, &ts);
}

static int number_arg(napi_env env, napi_callback_info info, double min, double max, double *out) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return 0;
  if (napi_get_value_double(env, argv[0], out) != napi_ok || !(*out >= min && *out <= max)) {
    napi_throw_range_error(env, NULL, "number out of range");
    return 0;
  }
  return 1;
}

// setClock(ms): CLOCK_REALTIME := ms since the epoch, to the microsecond.
static napi_value set_clock(napi_env env, napi_callback_info info) {
  double ms;
  if (!number_arg(env, info, 1, 1e15, &ms)) return NULL;
  if (set_realtime_us((int64_t)(ms * 1000.0)) != 0) return fail(env, "clock_settime", errno);
  return NULL;
}

// stepClock(deltaMs): CLOCK_REALTIME += deltaMs, read and written here so no precision is lost in between.
static napi_value step_clock(napi_env env, napi_callback_info info) {
  double delta;
  struct timespec now;
  if (!number_arg(env, info, -1e13, 1e13, &delta)) return NULL;
  if (clock_gettime(CLOCK_REALTIME, &now) != 0) return fail(env, "clock_gettime", errno);
  int64_t us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000 + (int64_t)(delta * 1000.0);
  if (us <= 0 || set_realtime_us(us) != 0) return fail(env, "clock_settime", us <= 0 ? EINVAL : errno);
  return NULL;
}

// reseed(seed: Buffer): mixes the seed into the kernel input pool, reseeds the kernel CRNG from it
// (RNDRESEEDCRNG, root only) and reseeds OpenSSL with it as additional input.
static napi_value reseed(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *data;
  size_t length;
  if (!args(env, info, 1, argv)) return NULL;
  if (napi_get_buffer_info(env, argv[0], &data, &length) != napi_ok || length < 16 || length > 4096) {
    napi_throw_range_error(env, NULL, "reseed needs a Buffer of 16 to 4096 bytes");
    return NULL;
  }
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail(env, "open /dev/urandom", errno);
  ssize_t written = write(fd, data, length);
  int error = written == (ssize_t)length ? 0 : (written < 0 ? errno : EIO);
  if (!error && ioctl(fd, RNDRESEEDCRNG) != 0) error = errno;
  close(fd);
  if (error) return fail(env, "kernel CRNG reseed", error);
  RAND_add(data, (int)length, 0.0); // after the kernel: the DRBG's fresh entropy comes from the new CRNG
  return NULL;
}

static int string_arg(napi_env env, napi_value value, char *out, size_t size) {
  size_t length;
  if (napi_get_value_string_utf8(env, value, out, size, &length) != napi_ok || length == 0 || length >= size - 1) {
    napi_throw_type_error(env, NULL, "expected a path");
    return 0;
  }
  return 1;
}

// mountTask(device, target): drops the device's cached blocks (BLKFLSBUF: the kernel read the placeholder
// that backed it at boot, before the host swapped the image), then mounts it ext4, read-only, at target.
static napi_value mount_task(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char device[256], target[256];
  if (!args(env, info, 2, argv) || !string_arg(env, argv[0], device, sizeof device) || !string_arg(env, argv[1], target, sizeof target)) return NULL;
  int fd = open(device, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(env, "open task disk", errno);
  int error = ioctl(fd, BLKFLSBUF, 0) != 0 ? errno : 0;
  close(fd);
  if (error) return fail(env, "BLKFLSBUF", error);
  if (mount(device, target, "ext4", MS_RDONLY | MS_NOATIME | MS_NODEV | MS_NOSUID, NULL) != 0) return fail(env, "mount", errno);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "setClock", NAPI_AUTO_LENGTH, set_clock, NULL, &fn);
  napi_set_named_property(env, exports, "setClock", fn);
  napi_create_function(env, "stepClock", NAPI_AUTO_LENGTH, step_clock, NULL, &fn);
  napi_set_named_property(env, exports, "stepClock", fn);
  napi_create_function(env, "reseed", NAPI_AUTO_LENGTH, reseed, NULL, &fn);
  napi_set_named_property(env, exports, "reseed", fn);
  napi_create_function(env, "mountTask", NAPI_AUTO_LENGTH, mount_task, NULL, &fn);
  napi_set_named_property(env, exports, "mountTask", fn);
  return exports;
}
