// edgebuf.hpp: header-only C++17 wrapper of the edgebuf C API (include/edgebuf.h).
//
//   edgebuf::Config cfg;
//   cfg.set("path", "/var/lib/app/predictions.db")
//      .set("endpoint", "https://ingest.example.com/v1/predictions")
//      .set("http.header.X-Api-Key", key)
//      .from_env();                                  // EDGEBUF_* variables override
//   edgebuf::Buffer buf(cfg);                        // throws edgebuf::Error
//   buf.log(R"({"class":3,"score":0.92})");
//   buf.close(std::chrono::seconds(5));              // deliver for up to 5 s
//
// Build: -I<repo>/include -I<repo>/bindings/cpp, link -L<repo>/target/release -ledgebuf.
//
// Errors: the throwing calls throw edgebuf::Error (a std::runtime_error with code() and
// name()); every call has a non-throwing try_* twin returning the edgebuf_result, with the
// message in edgebuf::last_error() (for codes that came from the library).
//
// Threads: log, flush, sync, retry_now, status and status_json may be called on one Buffer from
// any number of threads at once. close, assignment and destruction must not overlap other calls
// on the same Buffer (as in the C API, a call on a closed handle is undefined; here it is
// caught and reported as EDGEBUF_ERR_CLOSED as long as it does not race with close).
#ifndef EDGEBUF_HPP
#define EDGEBUF_HPP

// In C++ the C header's opaque struct tag `edgebuf` (typedef struct edgebuf edgebuf_t) and
// `namespace edgebuf` cannot both live at global scope. The tag is renamed while the header is
// read: it is only ever used through pointers (edgebuf_t *), and functions with C linkage are
// not name-mangled, so nothing changes at the ABI. Include this file before (or instead of)
// edgebuf.h in C++. A C++ function with an edgebuf_t* parameter declared in a file without
// edgebuf.hpp mangles differently; declare such functions where edgebuf.hpp is included.
#ifdef EDGEBUF_H
#error "edgebuf.hpp must be included before edgebuf.h: the C struct tag `edgebuf` clashes with namespace edgebuf"
#endif
#pragma push_macro("edgebuf")
#undef edgebuf
#define edgebuf edgebuf_opaque_handle_
#include "edgebuf.h"
#pragma pop_macro("edgebuf")

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace edgebuf {

using Result = edgebuf_result;
/// The C status struct; every field is documented in edgebuf.h and the README.
using Status = edgebuf_status_t;

/// A failed call: the library's result code, its name and message.
class Error : public std::runtime_error {
 public:
  Error(Result code, const std::string& message)
      : std::runtime_error(std::string(edgebuf_result_name(code)) +
                           (message.empty() ? "" : ": " + message)),
        code_(code) {}
  /// EDGEBUF_ERR_*.
  Result code() const noexcept { return code_; }
  /// The static name, "EDGEBUF_ERR_FULL".
  const char* name() const noexcept { return edgebuf_result_name(code_); }

 private:
  Result code_;
};

/// This thread's message for its last failed library call ("" when none).
inline const char* last_error() noexcept { return edgebuf_last_error(); }
/// The static name of a result code.
inline const char* result_name(Result code) noexcept { return edgebuf_result_name(code); }
/// The library version, "MAJOR.MINOR.PATCH".
inline const char* version() noexcept { return edgebuf_version(); }

/// One event, valid during the handler call only (message points into the library).
struct Event {
  int32_t kind;         // EDGEBUF_EVENT_*
  uint64_t count;       // records concerned
  int32_t http_status;  // 0 where none applies
  std::string_view message;
};

/// Runs on a library thread, one event at a time. It may call log, status, status_json and
/// retry_now on its own Buffer; flush, sync and close from it return
/// EDGEBUF_ERR_INVALID_ARGUMENT. An exception it throws is caught and ignored (it must not
/// cross into the library).
using EventHandler = std::function<void(const Event&)>;

namespace detail {

inline void check(Result r) {
  if (r != EDGEBUF_OK) throw Error(r, edgebuf_last_error());
}

inline uint32_t to_ms(std::chrono::milliseconds t) noexcept {
  if (t.count() <= 0) return 0;
  if (t.count() >= static_cast<std::chrono::milliseconds::rep>(
                       std::numeric_limits<uint32_t>::max())) {
    return std::numeric_limits<uint32_t>::max();
  }
  return static_cast<uint32_t>(t.count());
}

extern "C" inline void edgebuf_hpp_event_trampoline(const edgebuf_event_t* ev, void* user_data) noexcept {
  auto* handler = static_cast<EventHandler*>(user_data);
  if (handler == nullptr || ev == nullptr || !*handler) return;
  try {
    (*handler)(Event{ev->kind, ev->count, ev->http_status,
                     std::string_view(ev->message != nullptr ? ev->message : "")});
  } catch (...) {
    // Swallowed: an exception must never unwind into the library's thread.
  }
}

struct ConfigDeleter {
  void operator()(edgebuf_config_t* c) const noexcept { edgebuf_config_free(c); }
};

inline Error closed_error() {
  return Error(EDGEBUF_ERR_CLOSED, "the edgebuf::Buffer is closed or moved-from");
}

}  // namespace detail

/// Configuration: keys and values as the README's Configuration table names them, and the event handler.
/// Move-only; one thread at a time. Buffers opened from it keep their own copy.
class Config {
 public:
  Config() : cfg_(edgebuf_config_new()) {
    if (!cfg_) throw std::bad_alloc();
  }

  /// Sets one key; throws Error(EDGEBUF_ERR_INVALID_CONFIG) naming the key when it is unknown
  /// or the value is bad (the old value stays). An empty value restores the default.
  Config& set(const std::string& key, const std::string& value) {
    if (has_nul(key) || has_nul(value)) {
      throw Error(EDGEBUF_ERR_INVALID_CONFIG, "a configuration key or value contains a NUL byte");
    }
    detail::check(try_set(key, value));
    return *this;
  }
  /// Sets a numeric key ("commit.interval_ms", 100).
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Config& set(const std::string& key, T value) {
    return set(key, std::to_string(value));
  }
  /// A key or value with a NUL byte is EDGEBUF_ERR_INVALID_CONFIG without a library call.
  Result try_set(const std::string& key, const std::string& value) noexcept {
    if (has_nul(key) || has_nul(value)) return EDGEBUF_ERR_INVALID_CONFIG;
    return edgebuf_config_set(cfg_.get(), key.c_str(), value.c_str());
  }

  /// Applies every EDGEBUF_* environment variable (all or nothing).
  Config& from_env() {
    detail::check(try_from_env());
    return *this;
  }
  Result try_from_env() noexcept { return edgebuf_config_from_env(cfg_.get()); }

  /// Sets the event handler (an empty function removes it).
  Config& on_event(EventHandler handler) {
    handler_ = std::move(handler);
    return *this;
  }

  /// The C object, for calls this wrapper does not cover.
  edgebuf_config_t* get() const noexcept { return cfg_.get(); }

 private:
  friend class Buffer;
  static bool has_nul(const std::string& s) noexcept { return s.find('\0') != std::string::npos; }
  std::unique_ptr<edgebuf_config_t, detail::ConfigDeleter> cfg_;
  EventHandler handler_;
};

/// An open buffer (RAII, move-only). The destructor closes it with a zero timeout: what is in
/// memory is written to disk and delivered after the next open. Call close(timeout) to
/// deliver first.
class Buffer {
 public:
  /// An empty Buffer (like a moved-from one): every call reports EDGEBUF_ERR_CLOSED.
  Buffer() noexcept = default;

  /// Opens the buffer; throws Error (INVALID_CONFIG, LOCKED, CORRUPT, STORAGE, ...).
  explicit Buffer(const Config& cfg) { open_into(cfg); }

  /// Same as the constructor.
  static Buffer open(const Config& cfg) { return Buffer(cfg); }

  ~Buffer() { (void)try_close(std::chrono::milliseconds(0)); }

  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  Buffer(Buffer&& other) noexcept
      : h_(std::exchange(other.h_, nullptr)), handler_(std::move(other.handler_)) {}

  /// Closes this buffer (zero timeout) and takes over other's.
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      (void)try_close(std::chrono::milliseconds(0));
      h_ = std::exchange(other.h_, nullptr);
      handler_ = std::move(other.handler_);
    }
    return *this;
  }

  /// True while open.
  explicit operator bool() const noexcept { return h_ != nullptr; }
  /// The C handle (nullptr when closed), for calls this wrapper does not cover.
  edgebuf_t* get() const noexcept { return h_; }

  /// Accepts one record: exactly one JSON value. Throws Error: INVALID_RECORD (nothing
  /// stored), FULL, STORAGE (sync mode while the disk fails), CLOSED.
  void log(std::string_view record) { detail::check(live().try_log(record)); }
  Result try_log(std::string_view record) noexcept {
    if (!h_) return EDGEBUF_ERR_CLOSED;
    // data() may be nullptr for an empty view: pass "" so the library reports INVALID_RECORD.
    const char* p = record.data() != nullptr ? record.data() : "";
    return edgebuf_log(h_, p, record.size());
  }

  /// Waits until every record logged before the call is delivered, dropped or dead-lettered.
  /// Throws Error(EDGEBUF_ERR_TIMEOUT) when time runs out (nothing is lost).
  void flush(std::chrono::milliseconds timeout) { detail::check(live().try_flush(timeout)); }
  Result try_flush(std::chrono::milliseconds timeout) noexcept {
    return h_ ? edgebuf_flush(h_, detail::to_ms(timeout)) : EDGEBUF_ERR_CLOSED;
  }

  /// Waits until every record logged before the call is committed and fsync'd.
  void sync(std::chrono::milliseconds timeout) { detail::check(live().try_sync(timeout)); }
  Result try_sync(std::chrono::milliseconds timeout) noexcept {
    return h_ ? edgebuf_sync(h_, detail::to_ms(timeout)) : EDGEBUF_ERR_CLOSED;
  }

  /// The network is back: cuts a running backoff short. Never blocks.
  void retry_now() { detail::check(live().try_retry_now()); }
  Result try_retry_now() noexcept { return h_ ? edgebuf_retry_now(h_) : EDGEBUF_ERR_CLOSED; }

  /// The counters and state.
  Status status() const {
    Status st{};
    detail::check(live().try_status(st));
    return st;
  }
  Result try_status(Status& out) const noexcept {
    if (!h_) return EDGEBUF_ERR_CLOSED;
    out = Status{};
    out.struct_size = static_cast<uint32_t>(sizeof(Status));
    return edgebuf_status(h_, &out);
  }

  /// The status as the library's JSON object.
  std::string status_json() const {
    live();
    std::string s(512, '\0');
    for (;;) {
      size_t len = 0;
      Result r = edgebuf_status_json(h_, s.data(), s.size(), &len);
      if (r == EDGEBUF_ERR_BUFFER_TOO_SMALL) {  // len is the size needed; it may grow
        s.assign(len + 128, '\0');
        continue;
      }
      detail::check(r);
      s.resize(len);
      return s;
    }
  }

  /// Stops intake, writes memory to disk, delivers for at most `timeout` and frees the
  /// handle. Returns true when nothing is pending, false when records stay on disk for the
  /// next open (EDGEBUF_ERR_TIMEOUT). Throws Error(EDGEBUF_ERR_STORAGE) when records held in
  /// memory could not be written (the handle is freed all the same), and
  /// Error(EDGEBUF_ERR_INVALID_ARGUMENT) from this buffer's own event handler (nothing is
  /// freed). Closing a closed Buffer does nothing and returns true.
  bool close(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    Result r = try_close(timeout);
    if (r == EDGEBUF_OK) return true;
    if (r == EDGEBUF_ERR_TIMEOUT) return false;
    detail::check(r);
    return false;
  }
  Result try_close(std::chrono::milliseconds timeout) noexcept {
    if (!h_) return EDGEBUF_OK;
    Result r = edgebuf_close(h_, detail::to_ms(timeout));
    if (r != EDGEBUF_ERR_INVALID_ARGUMENT) {
      // Freed; no callback runs any more, so the handler may go.
      h_ = nullptr;
      handler_.reset();
    }
    return r;
  }

 private:
  void open_into(const Config& cfg) {
    edgebuf_config_t* c = cfg.cfg_.get();
    std::unique_ptr<EventHandler> handler;
    if (cfg.handler_) {
      handler = std::make_unique<EventHandler>(cfg.handler_);
      detail::check(edgebuf_config_set_event_callback(c, detail::edgebuf_hpp_event_trampoline, handler.get()));
    }
    edgebuf_t* h = nullptr;
    Result r = edgebuf_open(c, &h);
    std::string msg = r != EDGEBUF_OK ? edgebuf_last_error() : "";
    if (handler) {
      // The open handle has its own copy; do not leave the Config pointing at our handler.
      (void)edgebuf_config_set_event_callback(c, nullptr, nullptr);
    }
    if (r != EDGEBUF_OK) throw Error(r, msg);
    h_ = h;
    handler_ = std::move(handler);
  }

  // The throwing calls report a closed Buffer themselves: the thread's last_error() would be
  // stale, since no library call is made.
  Buffer& live() {
    if (!h_) throw detail::closed_error();
    return *this;
  }
  const Buffer& live() const {
    if (!h_) throw detail::closed_error();
    return *this;
  }

  edgebuf_t* h_ = nullptr;
  // Heap-allocated so its address (the callback's user_data) survives moves of the Buffer.
  std::unique_ptr<EventHandler> handler_;
};

}  // namespace edgebuf

#endif  // EDGEBUF_HPP
