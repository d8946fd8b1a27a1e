// Tests of bindings/cpp/edgebuf.hpp against libedgebuf.so, with a tiny HTTP receiver on
// 127.0.0.1 (one thread per keep-alive connection) and a dead port.
#include "edgebuf.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

static int failures = 0;
#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                           \
    }                                                                       \
  } while (0)

// Runs `f`, expecting an edgebuf::Error with `code`.
template <class F>
static bool throws_code(F&& f, edgebuf::Result code) {
  try {
    f();
  } catch (const edgebuf::Error& e) {
    if (e.code() != code) std::fprintf(stderr, "  got %s, want %s\n", e.what(), edgebuf::result_name(code));
    return e.code() == code;
  }
  std::fprintf(stderr, "  no exception, want %s\n", edgebuf::result_name(code));
  return false;
}

// A minimal HTTP/1.1 receiver: answers every POST with `status` and keeps the connection.
class Receiver {
 public:
  std::atomic<int> status{200};
  std::atomic<int> requests{0};

  Receiver() {
    lfd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd_, 16) != 0) {
      std::perror("receiver bind/listen");
      std::exit(2);
    }
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~Receiver() {
    stopping_ = true;
    ::shutdown(lfd_, SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard<std::mutex> g(mu_);
      for (int fd : conns_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : workers_) t.join();
    for (int fd : conns_) ::close(fd);
    ::close(lfd_);
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/ingest"; }

  size_t distinct_ids() {
    std::lock_guard<std::mutex> g(mu_);
    return ids_.size();
  }
  size_t total_ids() {
    std::lock_guard<std::mutex> g(mu_);
    return total_;
  }

 private:
  void accept_loop() {
    for (;;) {
      int fd = ::accept(lfd_, nullptr, nullptr);
      if (fd < 0) {
        if (stopping_) return;
        if (errno == EINTR) continue;
        return;
      }
      std::lock_guard<std::mutex> g(mu_);
      conns_.push_back(fd);
      workers_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    std::string buf;
    char chunk[65536];
    for (;;) {
      size_t hdr_end;
      while ((hdr_end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        buf.append(chunk, static_cast<size_t>(n));
      }
      std::string head = buf.substr(0, hdr_end);
      for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t clen = 0;
      size_t p = head.find("content-length:");
      if (p != std::string::npos) clen = std::strtoul(head.c_str() + p + 15, nullptr, 10);
      while (buf.size() < hdr_end + 4 + clen) {
        ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        buf.append(chunk, static_cast<size_t>(n));
      }
      std::string body = buf.substr(hdr_end + 4, clen);
      buf.erase(0, hdr_end + 4 + clen);
      requests++;
      int code = status.load();
      if (code / 100 == 2) record(body);
      std::string resp = "HTTP/1.1 " + std::to_string(code) +
                         (code == 200 ? " OK" : " Service Unavailable") +
                         "\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
      if (::send(fd, resp.data(), resp.size(), MSG_NOSIGNAL) < 0) return;
    }
  }

  // Collects the envelope ids ("id":"<instance>-<seq>") of an acknowledged batch.
  void record(const std::string& body) {
    std::lock_guard<std::mutex> g(mu_);
    const std::string key = "\"id\":\"";
    for (size_t p = body.find(key); p != std::string::npos; p = body.find(key, p)) {
      p += key.size();
      size_t e = body.find('"', p);
      ids_.insert(body.substr(p, e - p));
      ++total_;
    }
  }

  int lfd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
  std::set<std::string> ids_;
  size_t total_ = 0;
};

// A port on 127.0.0.1 with nothing listening (connections are refused).
static int dead_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

static std::string tmpdir;
static int path_counter = 0;

static edgebuf::Config make_config(const std::string& endpoint, std::string* path_out = nullptr) {
  std::string path = tmpdir + "/buf" + std::to_string(++path_counter) + ".db";
  if (path_out) *path_out = path;
  edgebuf::Config cfg;
  cfg.set("path", path)
      .set("endpoint", endpoint)
      .set("source.id", "cpp-test")
      .set("commit.interval_ms", 20)
      .set("batch.linger_ms", 10)
      .set("retry.initial_ms", 50)
      .set("retry.max_ms", 200)
      .set("http.proxy", "none");
  return cfg;
}

static void test_static_properties() {
  static_assert(!std::is_copy_constructible_v<edgebuf::Buffer>);
  static_assert(!std::is_copy_assignable_v<edgebuf::Buffer>);
  static_assert(std::is_nothrow_move_constructible_v<edgebuf::Buffer>);
  static_assert(std::is_nothrow_move_assignable_v<edgebuf::Buffer>);
  static_assert(std::is_base_of_v<std::runtime_error, edgebuf::Error>);
  CHECK(std::string(edgebuf::version()).find('.') != std::string::npos);
  edgebuf::Error e(EDGEBUF_ERR_FULL, "m");
  CHECK(std::string(e.name()) == "EDGEBUF_ERR_FULL");
  CHECK(std::string(e.what()) == "EDGEBUF_ERR_FULL: m");
  edgebuf_status_t init = EDGEBUF_STATUS_INIT;  // the header's initializer works in C++
  CHECK(init.struct_size == sizeof(edgebuf_status_t));
}

static void test_config_errors() {
  edgebuf::Config cfg;
  try {
    cfg.set("no.such.key", "1");
    CHECK(false);
  } catch (const edgebuf::Error& e) {
    CHECK(e.code() == EDGEBUF_ERR_INVALID_CONFIG);
    CHECK(std::string(e.what()).find("no.such.key") != std::string::npos);
  }
  CHECK(throws_code([&] { cfg.set("http.header.X-Api-Key", std::string("a\0b", 3)); },
                    EDGEBUF_ERR_INVALID_CONFIG));
  CHECK(cfg.try_set("commit.interval_ms", "soon") == EDGEBUF_ERR_INVALID_CONFIG);
  CHECK(std::string(edgebuf::last_error()).find("commit.interval_ms") != std::string::npos);
  // Missing endpoint: checked by open.
  edgebuf::Config partial;
  partial.set("path", tmpdir + "/partial.db");
  CHECK(throws_code([&] { edgebuf::Buffer b(partial); }, EDGEBUF_ERR_INVALID_CONFIG));
}

static void test_delivery(Receiver& rcv) {
  std::atomic<uint64_t> delivered_events{0};
  edgebuf::Config cfg = make_config(rcv.url());
  cfg.on_event([&](const edgebuf::Event& ev) {
    if (ev.kind == EDGEBUF_EVENT_DELIVERED) delivered_events += ev.count;
  });
  size_t before = rcv.distinct_ids();
  edgebuf::Buffer buf = edgebuf::Buffer::open(cfg);
  CHECK(static_cast<bool>(buf));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&buf, t] {
      for (int i = 0; i < 100; ++i) {
        std::string rec = "{\"t\":" + std::to_string(t) + ",\"i\":" + std::to_string(i) + "}";
        buf.log(rec);
      }
    });
  }
  for (auto& th : threads) th.join();
  buf.flush(10s);
  CHECK(rcv.distinct_ids() - before == 400);
  edgebuf::Status st = buf.status();
  CHECK(st.logged_total == 400);
  CHECK(st.delivered_total == 400);
  CHECK(st.pending_records == 0);
  CHECK(st.connectivity == EDGEBUF_CONNECTIVITY_ONLINE);
  CHECK(st.last_http_status == 200);
  std::string js = buf.status_json();
  CHECK(js.find("\"delivered_total\":400") != std::string::npos);
  CHECK(buf.close(5s) == true);
  CHECK(!buf);
  CHECK(delivered_events == 400);  // close ran every queued callback
  CHECK(buf.close(1s) == true);    // closing a closed Buffer does nothing
}

static void test_invalid_record(Receiver& rcv) {
  edgebuf::Buffer buf(make_config(rcv.url()));
  CHECK(throws_code([&] { buf.log("{\"unterminated\": "); }, EDGEBUF_ERR_INVALID_RECORD));
  CHECK(buf.try_log("1 2") == EDGEBUF_ERR_INVALID_RECORD);
  CHECK(std::string(edgebuf::last_error()).size() > 0);
  CHECK(buf.try_log(std::string_view()) == EDGEBUF_ERR_INVALID_RECORD);
  CHECK(buf.try_log(std::string_view("\xff", 1)) == EDGEBUF_ERR_INVALID_RECORD);
  // A view into a larger buffer: only `size()` bytes are logged.
  const char* two = "{}{}";
  CHECK(buf.try_log(std::string_view(two, 2)) == EDGEBUF_OK);
  CHECK(buf.status().logged_total == 1);
}

static void test_locked(Receiver& rcv) {
  std::string path;
  edgebuf::Config cfg = make_config(rcv.url(), &path);
  {
    edgebuf::Buffer a(cfg);
    CHECK(throws_code([&] { edgebuf::Buffer b(cfg); }, EDGEBUF_ERR_LOCKED));
  }  // the destructor closes and releases the lock
  edgebuf::Buffer again(cfg);
  CHECK(static_cast<bool>(again));
}

static void test_dead_port() {
  std::string path;
  std::string endpoint = "http://127.0.0.1:" + std::to_string(dead_port()) + "/";
  edgebuf::Config cfg = make_config(endpoint, &path);
  edgebuf::Buffer buf(cfg);
  for (int i = 0; i < 5; ++i) buf.log("{\"i\":" + std::to_string(i) + "}");
  buf.sync(5s);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(throws_code([&] { buf.flush(300ms); }, EDGEBUF_ERR_TIMEOUT));
  CHECK(buf.try_flush(0ms) == EDGEBUF_ERR_TIMEOUT);
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  edgebuf::Status st = buf.status();
  CHECK(st.pending_records == 5);
  CHECK(st.failed_attempts_total >= 1);
  CHECK(st.connectivity == EDGEBUF_CONNECTIVITY_OFFLINE);
  CHECK(buf.try_retry_now() == EDGEBUF_OK);
  t0 = std::chrono::steady_clock::now();
  CHECK(buf.close(100ms) == false);  // TIMEOUT: the records stay on disk
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(!buf);
  edgebuf::Buffer reopened(cfg);
  CHECK(reopened.status().pending_at_open == 5);
  CHECK(reopened.try_close(0ms) == EDGEBUF_ERR_TIMEOUT);
}

static void test_outage_recovers(Receiver& rcv) {
  std::atomic<int> offline{0}, online{0};
  edgebuf::Config cfg = make_config(rcv.url());
  cfg.on_event([&](const edgebuf::Event& ev) {
    if (ev.kind == EDGEBUF_EVENT_OFFLINE) offline++;
    if (ev.kind == EDGEBUF_EVENT_ONLINE) online++;
  });
  rcv.status = 503;
  edgebuf::Buffer buf(cfg);
  for (int i = 0; i < 20; ++i) buf.log("[" + std::to_string(i) + "]");
  CHECK(throws_code([&] { buf.flush(400ms); }, EDGEBUF_ERR_TIMEOUT));
  CHECK(buf.status().last_http_status == 503);
  rcv.status = 200;
  buf.retry_now();
  buf.flush(10s);
  edgebuf::Status st = buf.status();
  CHECK(st.delivered_total == 20);
  CHECK(st.pending_records == 0);
  CHECK(buf.close(5s));
  CHECK(offline >= 1);
  CHECK(online >= 1);
}

static void test_move_semantics(Receiver& rcv) {
  edgebuf::Buffer a(make_config(rcv.url()));
  edgebuf_t* raw = a.get();
  edgebuf::Buffer b(std::move(a));
  CHECK(!a);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  CHECK(b.get() == raw);
  CHECK(throws_code([&] { a.log("{}"); }, EDGEBUF_ERR_CLOSED));
  CHECK(a.try_log("{}") == EDGEBUF_ERR_CLOSED);
  CHECK(throws_code([&] { (void)a.status(); }, EDGEBUF_ERR_CLOSED));
  CHECK(a.try_close(0ms) == EDGEBUF_OK);
  b.log("{\"moved\":true}");

  edgebuf::Buffer c;
  CHECK(!c);
  c = std::move(b);
  CHECK(!b && c.get() == raw);
  c.log("{\"moved\":2}");

  // Assigning over an open buffer closes it first (its lock is released).
  std::string path;
  edgebuf::Config cfg2 = make_config(rcv.url(), &path);
  edgebuf::Buffer d(cfg2);
  d = std::move(c);
  CHECK(d.get() == raw);
  edgebuf::Buffer reopen(cfg2);
  CHECK(static_cast<bool>(reopen));

  // In a vector (reallocation moves them).
  std::vector<edgebuf::Buffer> v;
  for (int i = 0; i < 3; ++i) v.emplace_back(make_config(rcv.url()));
  for (auto& x : v) x.log("{}");
  d.flush(10s);
  CHECK(d.status().delivered_total == 2);
}

static void test_handler_across_move_and_in_callback(Receiver& rcv) {
  // The handler lives on the heap: moving the Buffer keeps user_data valid.
  std::atomic<int> delivered{0};
  std::atomic<int> close_result{-1};
  std::atomic<edgebuf::Buffer*> self{nullptr};
  edgebuf::Config cfg = make_config(rcv.url());
  cfg.on_event([&](const edgebuf::Event& ev) {
    if (ev.kind != EDGEBUF_EVENT_DELIVERED) return;
    delivered += static_cast<int>(ev.count);
    if (edgebuf::Buffer* b = self.load(); b != nullptr && close_result < 0) {
      close_result = b->try_close(0ms);  // refused in a callback of the same handle
      (void)b->status();                 // allowed
    }
    throw std::runtime_error("ignored: must not reach the library");
  });
  edgebuf::Buffer first(cfg);
  edgebuf::Buffer buf(std::move(first));
  self = &buf;
  for (int i = 0; i < 10; ++i) buf.log("{}");
  buf.flush(10s);
  for (int i = 0; i < 500 && close_result < 0; ++i) std::this_thread::sleep_for(10ms);
  self = nullptr;
  CHECK(buf.close(5s));
  CHECK(delivered == 10);
  CHECK(close_result == EDGEBUF_ERR_INVALID_ARGUMENT);
  // The Config can open again: it no longer points at the first Buffer's handler.
  edgebuf::Config again = make_config(rcv.url());
  edgebuf::Buffer plain(again);
  plain.log("{}");
  plain.flush(10s);
}

int main() {
  char tmpl[] = "/tmp/edgebuf-cpp-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 2;
  }
  tmpdir = tmpl;
  {
    Receiver rcv;
    struct {
      const char* name;
      std::function<void()> fn;
    } tests[] = {
        {"static_properties", test_static_properties},
        {"config_errors", test_config_errors},
        {"delivery", [&] { test_delivery(rcv); }},
        {"invalid_record", [&] { test_invalid_record(rcv); }},
        {"locked", [&] { test_locked(rcv); }},
        {"dead_port", test_dead_port},
        {"outage_recovers", [&] { test_outage_recovers(rcv); }},
        {"move_semantics", [&] { test_move_semantics(rcv); }},
        {"handler_across_move_and_in_callback", [&] { test_handler_across_move_and_in_callback(rcv); }},
    };
    for (auto& t : tests) {
      int before = failures;
      try {
        t.fn();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: unexpected exception: %s\n", t.name, e.what());
        ++failures;
      }
      std::printf("%s %s\n", failures == before ? "ok  " : "FAIL", t.name);
    }
  }
  std::string rm = "rm -rf '" + tmpdir + "'";
  if (std::system(rm.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", tmpdir.c_str());
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all C++ binding tests passed\n");
  return 0;
}
