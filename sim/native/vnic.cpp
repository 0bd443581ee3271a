// The Verilated engine as a virtual NIC on a Linux TAP device.
//
// One process clocks the engine natively: frames read from the TAP go to MAC RX
// (rx_axis_*), frames from MAC TX (tx_axis_*) are written to the TAP, and the engine's
// `tick` input pulses once per microsecond of wall-clock time, so every timer of the
// engine (RTO, TIME-WAIT, ARP) runs in real time.  A host driver connects over a Unix
// stream socket and exchanges the packed host-interface messages of hdl/host_if.py
// (commands, events, TX and RX beats), register reads and writes, trace records and
// statistics.  The wire format of the socket is described in sim/vnic.py.
//
// vnic_config.h (written by sim/vnic.py for each build) names the Verilated class and
// the byte sizes of the packed messages.

#include "vnic_config.h"

#include VNIC_TOP_HEADER
#include <verilated.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <memory>
#include <poll.h>
#include <random>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

// The socket's message types, generated from host.socket_transport.Message (the wire
// format is in that module's docstring): VNIC_MESSAGES comes from vnic_config.h.
enum Message : uint8_t {
#define VNIC_MESSAGE(name, value) name = value,
    VNIC_MESSAGES(VNIC_MESSAGE)
#undef VNIC_MESSAGE
};

// Bit fields of a packed little-endian value.
void set_field(uint8_t* bytes, unsigned offset, unsigned width, uint64_t value) {
    for (unsigned i = 0; i < width; i++, value >>= 1) {
        unsigned bit = offset + i;
        bytes[bit / 8] = (bytes[bit / 8] & ~(1u << (bit % 8))) | ((value & 1u) << (bit % 8));
    }
}
uint64_t get_field(const uint8_t* bytes, unsigned offset, unsigned width) {
    uint64_t value = 0;
    for (unsigned i = 0; i < width; i++) {
        unsigned bit = offset + i;
        value |= uint64_t(bytes[bit / 8] >> (bit % 8) & 1u) << i;
    }
    return value;
}

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Packed values travel as little-endian bytes; Verilator holds them as integers up to
// 64 bits and as arrays of 32-bit words above.
template <typename T>
void put_bytes(T& signal, const uint8_t* bytes, size_t n) {
    uint64_t value = 0;
    for (size_t i = 0; i < n && i < sizeof(T); i++) value |= uint64_t(bytes[i]) << (8 * i);
    signal = T(value);
}
template <std::size_t N>
void put_bytes(VlWide<N>& signal, const uint8_t* bytes, size_t n) {
    for (size_t w = 0; w < N; w++) {
        uint32_t value = 0;
        for (size_t k = 0; k < 4; k++)
            if (4 * w + k < n) value |= uint32_t(bytes[4 * w + k]) << (8 * k);
        signal[w] = value;
    }
}
template <typename T>
void get_bytes(const T& signal, uint8_t* bytes, size_t n) {
    uint64_t value = signal;
    for (size_t i = 0; i < n; i++) bytes[i] = i < 8 ? uint8_t(value >> (8 * i)) : 0;
}
template <std::size_t N>
void get_bytes(const VlWide<N>& signal, uint8_t* bytes, size_t n) {
    for (size_t i = 0; i < n; i++) bytes[i] = i / 4 < N ? uint8_t(signal[i / 4] >> (8 * (i % 4))) : 0;
}

void put_le(std::string& out, uint64_t value, int n) {
    for (int i = 0; i < n; i++) out.push_back(char(value >> (8 * i)));
}

struct Options {
    std::string tap;
    std::string socket_path;
    std::string hello;
    std::string pcap;
    std::string stats;
    std::vector<std::pair<uint16_t, uint32_t>> csr;
    bool busy_poll = false;
    double loss = 0, duplicate = 0, reorder = 0;
    uint64_t seed = 1;
    double max_seconds = 0;
};

// Loss, duplication and reordering of whole frames on one direction of the wire, for
// kernels without sch_netem.  A reordered frame is held back and sent after the next
// frame (or after 1 ms if none comes).
struct Impairment {
    double loss = 0, duplicate = 0, reorder = 0;
    std::mt19937_64 rng;
    std::uniform_real_distribution<double> uniform{0.0, 1.0};
    Bytes held;
    uint64_t held_since = 0;
    bool holding = false;
    uint64_t dropped = 0, duplicated = 0, reordered = 0;

    bool active() const { return loss > 0 || duplicate > 0 || reorder > 0; }

    template <typename Emit>
    void pass(Bytes frame, uint64_t now, Emit emit) {
        if (!active()) return emit(frame);
        if (uniform(rng) < loss) { dropped++; return; }
        int copies = uniform(rng) < duplicate ? 2 : 1;
        duplicated += copies - 1;
        if (!holding && uniform(rng) < reorder) {
            held = std::move(frame);
            held_since = now;
            holding = true;
            reordered++;
            return;
        }
        for (int i = 0; i < copies; i++) emit(frame);
        if (holding) { holding = false; emit(held); }
    }
    template <typename Emit>
    void expire(uint64_t now, Emit emit) {
        if (holding && now - held_since > 1000000) { holding = false; emit(held); }
    }
};

class PcapWriter {
  public:
    bool open(const std::string& path) {
        file_ = std::fopen(path.c_str(), "wb");
        if (!file_) return false;
        uint32_t header[6] = {0xa1b23c4d, 0x00040002, 0, 0, 65535, 1};  // ns, LINKTYPE_ETHERNET
        std::fwrite(header, sizeof header, 1, file_);
        return true;
    }
    void write(const Bytes& frame) {
        if (!file_) return;
        timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint32_t record[4] = {uint32_t(ts.tv_sec), uint32_t(ts.tv_nsec), uint32_t(frame.size()),
                              uint32_t(frame.size())};
        std::fwrite(record, sizeof record, 1, file_);
        std::fwrite(frame.data(), 1, frame.size(), file_);
    }
    void close() {
        if (file_) std::fclose(file_);
        file_ = nullptr;
    }
    void flush() {
        if (file_) std::fflush(file_);
    }

  private:
    std::FILE* file_ = nullptr;
};

int open_tap(const std::string& name) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int listen_unix(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return -1;
    std::strcpy(addr.sun_path, path.c_str());
    unlink(path.c_str());
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || listen(fd, 4) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

std::string read_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return "";
    std::string text;
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, n);
    std::fclose(f);
    return text;
}

class VirtualNic {
  public:
    VirtualNic(VerilatedContext* context, const Options& options)
        : options_(options), top_(new VNIC_TOP_CLASS{context}) {
        for (Impairment* impairment : {&to_engine_, &to_wire_}) {
            impairment->loss = options.loss;
            impairment->duplicate = options.duplicate;
            impairment->reorder = options.reorder;
        }
        to_engine_.rng.seed(options.seed);
        to_wire_.rng.seed(options.seed * 2654435761u + 1);
    }
    ~VirtualNic() {
        top_->final();
        delete top_;
    }

    int run();

  private:
    void reset();
    void cycle();
    void service(int timeout_ms);
    void read_tap();
    void accept_client();
    void read_client();
    void flush_client();
    void drop_client();
    void handle(uint8_t type, const uint8_t* payload, size_t length);
    void send(uint8_t type, const std::string& payload);
    void rx_beat(const uint8_t* beat);
    void flush_rx_run(bool last);
    void send_stats();
    void write_stats_file();
    void to_tap(const Bytes& frame);

    Options options_;
    VNIC_TOP_CLASS* top_;
    int tap_fd_ = -1, listen_fd_ = -1, client_fd_ = -1;
    PcapWriter pcap_;
    Impairment to_engine_, to_wire_;

    // MAC RX: frames waiting for the engine, and the one being fed.
    std::deque<Bytes> rx_frames_;
    Bytes rx_frame_;
    size_t rx_pos_ = 0;
    bool rx_active_ = false;
    // MAC TX: the frame being collected.
    Bytes tx_frame_;
    // Host -> engine streams.
    std::deque<Bytes> commands_, tx_beats_;
    // Register accesses in order: (address, value, is_read).
    struct CsrAccess { uint16_t addr; uint32_t value; bool read; };
    std::deque<CsrAccess> csr_;
    unsigned csr_wait_ = 0;
    // Socket buffers.
    std::string in_, out_;
    std::string rx_run_;
    unsigned rx_run_conn_ = 0;
    bool trace_ = false;
    // HOLD: the engine's frames wait here (a test makes two FINs cross on the wire).
    bool hold_ = false;
    std::deque<Bytes> held_;

    uint64_t cycles_ = 0, ticks_ = 0, tick_target_ = 0, start_ns_ = 0, idle_ = 0;
    uint64_t frames_in_ = 0, frames_out_ = 0, bytes_in_ = 0, bytes_out_ = 0;
    uint64_t tap_overflow_ = 0, sleeps_ = 0, resets_ = 0, host_rx_bytes_ = 0;
};

void VirtualNic::reset() {
    top_->soft_rst = 1;
    for (int i = 0; i < 4; i++) {
        top_->clk = 0;
        top_->eval();
        top_->clk = 1;
        top_->eval();
        cycles_++;
    }
    top_->soft_rst = 0;
    rx_frames_.clear();
    rx_active_ = false;
    tx_frame_.clear();
    commands_.clear();
    tx_beats_.clear();
    csr_.clear();
    csr_wait_ = 0;
    hold_ = false;
    held_.clear();
    rx_run_.clear();
    for (auto [addr, value] : options_.csr) csr_.push_back({addr, value, false});
    resets_++;
}

void VirtualNic::to_tap(const Bytes& frame) {
    if (hold_) {
        held_.push_back(frame);
        return;
    }
    frames_out_++;
    bytes_out_ += frame.size();
    if (tap_fd_ >= 0 && write(tap_fd_, frame.data(), frame.size()) < 0) tap_overflow_++;
}

// One clock cycle: drive the inputs, settle, take the handshakes, clock.  The model's
// inputs are registered (sim/vnic_top.py), so the first eval settles little.
void VirtualNic::cycle() {
    constexpr unsigned W = VNIC_DATA_BYTES;
    bool active = false;

    if (!rx_active_ && !rx_frames_.empty()) {
        rx_frame_ = std::move(rx_frames_.front());
        rx_frames_.pop_front();
        rx_pos_ = 0;
        rx_active_ = true;
    }
    if (rx_active_) {
        uint8_t beat[W] = {0};
        size_t n = std::min<size_t>(W, rx_frame_.size() - rx_pos_);
        std::memcpy(beat, rx_frame_.data() + rx_pos_, n);
        put_bytes(top_->rx_axis_tdata, beat, W);
        top_->rx_axis_tkeep = (n == 64) ? ~0ull : ((1ull << n) - 1);
        top_->rx_axis_tlast = rx_pos_ + n >= rx_frame_.size();
        top_->rx_axis_tvalid = 1;
        active = true;
    } else {
        top_->rx_axis_tvalid = 0;
    }
    top_->tx_axis_tready = 1;
    top_->cmd_valid = !commands_.empty();
    if (!commands_.empty()) put_bytes(top_->cmd_data, commands_.front().data(), VNIC_COMMAND_BYTES);
    top_->htx_valid = !tx_beats_.empty();
    if (!tx_beats_.empty()) put_bytes(top_->htx_data, tx_beats_.front().data(), VNIC_BEAT_BYTES);
    top_->evt_ready = 1;
    top_->hrx_ready = 1;

    // The microseconds of wall clock since the last cycle (VnicTop's tick is wide).
    uint64_t behind = tick_target_ > ticks_ ? tick_target_ - ticks_ : 0;
    top_->tick = behind > VNIC_TICK_MAX ? VNIC_TICK_MAX : behind;
    ticks_ += top_->tick;

    top_->csr_we = 0;
    if (!csr_.empty()) {
        const CsrAccess& access = csr_.front();
        top_->csr_addr = access.addr;
        top_->csr_wdata = access.value;
        top_->csr_we = !access.read;
        active = true;
    }

    top_->clk = 0;
    top_->eval();

    if (rx_active_ && top_->rx_axis_tready) {
        rx_pos_ += W;
        if (rx_pos_ >= rx_frame_.size()) rx_active_ = false;
    }
    if (top_->tx_axis_tvalid) {
        uint8_t beat[W];
        get_bytes(top_->tx_axis_tdata, beat, W);
        uint64_t keep = top_->tx_axis_tkeep;
        for (unsigned i = 0; i < W; i++)
            if (keep >> i & 1) tx_frame_.push_back(beat[i]);
        if (top_->tx_axis_tlast) {
            pcap_.write(tx_frame_);
            to_wire_.pass(std::move(tx_frame_), now_ns(), [this](const Bytes& f) { to_tap(f); });
            tx_frame_.clear();
        }
        active = true;
    }
    if (!commands_.empty() && top_->cmd_ready) commands_.pop_front();
    if (!tx_beats_.empty() && top_->htx_ready) tx_beats_.pop_front();
    if (top_->evt_valid) {
        std::string payload(VNIC_EVENT_BYTES, '\0');
        get_bytes(top_->evt_data, reinterpret_cast<uint8_t*>(payload.data()), payload.size());
        if (client_fd_ >= 0) send(EVENT, payload);
        active = true;
    }
    if (top_->hrx_valid) {
        uint8_t beat[VNIC_BEAT_BYTES];
        get_bytes(top_->hrx_data, beat, VNIC_BEAT_BYTES);
        if (client_fd_ >= 0) rx_beat(beat);
        active = true;
    }
    if (top_->trace_data & 1) {
        if (trace_ && client_fd_ >= 0) {
            std::string payload;
            put_le(payload, cycles_, 8);
            put_le(payload, now_ns() - start_ns_, 8);
            std::string bits(VNIC_TRACE_BYTES, '\0');
            get_bytes(top_->trace_data, reinterpret_cast<uint8_t*>(bits.data()), bits.size());
            send(TRACE, payload + bits);
        }
        active = true;
    }
    if (!csr_.empty()) {
        const CsrAccess access = csr_.front();
        if (!access.read) {
            csr_.pop_front();
        } else if (csr_wait_ == 0) {  // a read: the address has been driven for a while
            csr_wait_ = 2;  // VnicTop registers the address, the register file the data
        } else if (--csr_wait_ == 0) {
            std::string payload;
            put_le(payload, access.addr, 2);
            put_le(payload, top_->csr_rdata, 4);
            send(CSR_VALUE, payload);
            csr_.pop_front();
        }
    }

    top_->clk = 1;
    top_->eval();
    cycles_++;
    if (active || !commands_.empty() || !tx_beats_.empty()) idle_ = 0;
    else idle_++;
}

// RX beats go to the host as RX_DATA runs: the bytes of consecutive beats of one
// connection, up to and including the beat with `last`.
void VirtualNic::rx_beat(const uint8_t* beat) {
    unsigned conn = unsigned(get_field(beat, VNIC_BEAT_CONN_OFFSET, VNIC_BEAT_CONN_WIDTH));
    unsigned count = unsigned(get_field(beat, VNIC_BEAT_COUNT_OFFSET, VNIC_BEAT_COUNT_WIDTH));
    bool last = get_field(beat, VNIC_BEAT_LAST_OFFSET, 1);
    if (!rx_run_.empty() && rx_run_conn_ != conn) flush_rx_run(false);
    if (rx_run_.empty()) {
        rx_run_conn_ = conn;
        put_le(rx_run_, conn, 2);
        rx_run_.push_back(0);
    }
    for (unsigned i = 0; i < count && i < VNIC_DATA_BYTES; i++)
        rx_run_.push_back(char(get_field(beat, VNIC_BEAT_DATA_OFFSET + 8 * i, 8)));
    host_rx_bytes_ += count;
    if (last || rx_run_.size() > 60000) flush_rx_run(last);
}

void VirtualNic::flush_rx_run(bool last) {
    rx_run_[2] = char(last);
    send(RX_DATA, rx_run_);
    rx_run_.clear();
}

void VirtualNic::send(uint8_t type, const std::string& payload) {
    out_.push_back(char(type));
    put_le(out_, payload.size(), 2);
    out_ += payload;
}

void VirtualNic::send_stats() {
    std::string payload;
    for (uint64_t value : {cycles_, now_ns() - start_ns_, ticks_, frames_in_, frames_out_, bytes_in_,
                           bytes_out_, to_engine_.dropped + to_wire_.dropped,
                           to_engine_.duplicated + to_wire_.duplicated,
                           to_engine_.reordered + to_wire_.reordered, tap_overflow_, sleeps_, resets_,
                           host_rx_bytes_, uint64_t(out_.size())})
        put_le(payload, value, 8);
    send(STATS, payload);
}

void VirtualNic::write_stats_file() {
    if (options_.stats.empty()) return;
    std::FILE* f = std::fopen(options_.stats.c_str(), "w");
    if (!f) return;
    double seconds = double(now_ns() - start_ns_) / 1e9;
    std::fprintf(f,
                 "{\"cycles\": %llu, \"seconds\": %.6f, \"cycles_per_second\": %.0f, \"ticks\": %llu, "
                 "\"frames_in\": %llu, \"frames_out\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, "
                 "\"impaired_dropped\": %llu, \"impaired_duplicated\": %llu, "
                 "\"impaired_reordered\": %llu, \"sleeps\": %llu, \"resets\": %llu}\n",
                 (unsigned long long)cycles_, seconds, seconds > 0 ? cycles_ / seconds : 0.0,
                 (unsigned long long)ticks_, (unsigned long long)frames_in_,
                 (unsigned long long)frames_out_, (unsigned long long)bytes_in_,
                 (unsigned long long)bytes_out_,
                 (unsigned long long)(to_engine_.dropped + to_wire_.dropped),
                 (unsigned long long)(to_engine_.duplicated + to_wire_.duplicated),
                 (unsigned long long)(to_engine_.reordered + to_wire_.reordered),
                 (unsigned long long)sleeps_, (unsigned long long)resets_);
    std::fclose(f);
}

void VirtualNic::read_tap() {
    uint8_t buffer[16384];
    while (rx_frames_.size() < 64) {
        ssize_t n = read(tap_fd_, buffer, sizeof buffer);
        if (n <= 0) break;
        Bytes frame(buffer, buffer + n);
        frames_in_++;
        bytes_in_ += n;
        to_engine_.pass(std::move(frame), now_ns(), [this](const Bytes& f) {
            pcap_.write(f);
            rx_frames_.push_back(f);
        });
    }
}

void VirtualNic::accept_client() {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (client_fd_ >= 0) {  // one host driver at a time, as one process owns a NIC queue
        static const char busy[] = "\x01\x00\x00";
        (void)!write(fd, busy, 3);  // an empty HELLO: busy
        close(fd);
        return;
    }
    client_fd_ = fd;
    in_.clear();
    out_.clear();
    trace_ = false;
    send(HELLO, options_.hello);
}

void VirtualNic::drop_client() {
    close(client_fd_);
    client_fd_ = -1;
    in_.clear();
    out_.clear();
    // The driver's connections die with it, as sockets die with their process: a fresh
    // engine answers the peers' next segments with RST.
    reset();
}

void VirtualNic::read_client() {
    char buffer[65536];
    for (;;) {
        ssize_t n = read(client_fd_, buffer, sizeof buffer);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop_client();
            return;
        }
        if (n < 0) break;
        in_.append(buffer, n);
    }
    size_t pos = 0;
    while (in_.size() - pos >= 3) {
        const uint8_t* head = reinterpret_cast<const uint8_t*>(in_.data() + pos);
        size_t length = head[1] | (size_t(head[2]) << 8);
        if (in_.size() - pos < 3 + length) break;
        handle(head[0], head + 3, length);
        pos += 3 + length;
    }
    in_.erase(0, pos);
}

void VirtualNic::handle(uint8_t type, const uint8_t* payload, size_t length) {
    auto le = [&](size_t at, int n) {
        uint64_t v = 0;
        for (int i = 0; i < n && at + i < length; i++) v |= uint64_t(payload[at + i]) << (8 * i);
        return v;
    };
    switch (type) {
    case COMMAND:
        commands_.emplace_back(VNIC_COMMAND_BYTES, 0);
        std::memcpy(commands_.back().data(), payload, std::min<size_t>(length, VNIC_COMMAND_BYTES));
        break;
    case TX_BEAT:
        tx_beats_.emplace_back(VNIC_BEAT_BYTES, 0);
        std::memcpy(tx_beats_.back().data(), payload, std::min<size_t>(length, VNIC_BEAT_BYTES));
        break;
    case TX_DATA: {
        unsigned conn = unsigned(le(0, 2));
        size_t n = length >= 2 ? length - 2 : 0;
        size_t at = 0;
        do {
            size_t count = std::min<size_t>(VNIC_DATA_BYTES, n - at);
            Bytes beat(VNIC_BEAT_BYTES, 0);
            set_field(beat.data(), VNIC_BEAT_CONN_OFFSET, VNIC_BEAT_CONN_WIDTH, conn);
            for (size_t i = 0; i < count; i++)
                set_field(beat.data(), VNIC_BEAT_DATA_OFFSET + 8 * i, 8, payload[2 + at + i]);
            set_field(beat.data(), VNIC_BEAT_COUNT_OFFSET, VNIC_BEAT_COUNT_WIDTH, count);
            set_field(beat.data(), VNIC_BEAT_LAST_OFFSET, 1, at + count >= n);
            tx_beats_.push_back(std::move(beat));
            at += count;
        } while (at < n);
        break;
    }
    case CSR_WRITE:
        csr_.push_back({uint16_t(le(0, 2)), uint32_t(le(2, 4)), false});
        break;
    case CSR_READ:
        csr_.push_back({uint16_t(le(0, 2)), 0, true});
        break;
    case SUBSCRIBE:
        trace_ = le(0, 1) & 1;
        break;
    case STATS:
        send_stats();
        break;
    case HOLD:
        hold_ = le(0, 1) & 1;
        if (!hold_) {
            for (const Bytes& frame : held_) to_tap(frame);
            held_.clear();
        }
        break;
    default:
        break;  // unknown messages are ignored
    }
}

void VirtualNic::flush_client() {
    while (client_fd_ >= 0 && !out_.empty()) {
        ssize_t n = write(client_fd_, out_.data(), out_.size());
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            drop_client();
            return;
        }
        out_.erase(0, n);
    }
}

// Socket and TAP I/O, and the clock: called every few dozen cycles, and with a timeout
// when the engine has been idle for a while (no frame, message or event), so an idle
// virtual NIC sleeps instead of spinning.  Ticks missed while asleep are caught up one
// per cycle afterwards; the engine's timers compare against its microsecond count.
void VirtualNic::service(int timeout_ms) {
    pollfd fds[3];
    int n = 0;
    fds[n++] = {tap_fd_, POLLIN, 0};
    fds[n++] = {listen_fd_, POLLIN, 0};
    if (client_fd_ >= 0) fds[n++] = {client_fd_, short(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
    if (timeout_ms) sleeps_++;
    if (poll(fds, n, timeout_ms) <= 0) {
        auto emit = [this](const Bytes& f) { to_tap(f); };
        to_wire_.expire(now_ns(), emit);
        to_engine_.expire(now_ns(), [this](const Bytes& f) { rx_frames_.push_back(f); });
        return;
    }
    if (fds[0].revents & POLLIN) read_tap();
    if (fds[1].revents & POLLIN) accept_client();
    if (n > 2 && client_fd_ >= 0) {
        if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) read_client();
        if (client_fd_ >= 0 && (fds[2].revents & POLLOUT)) flush_client();
    }
    if (client_fd_ >= 0 && !out_.empty()) flush_client();
    to_wire_.expire(now_ns(), [this](const Bytes& f) { to_tap(f); });
    to_engine_.expire(now_ns(), [this](const Bytes& f) { rx_frames_.push_back(f); });
}

int VirtualNic::run() {
    tap_fd_ = open_tap(options_.tap);
    if (tap_fd_ < 0) {
        std::fprintf(stderr, "vnic: cannot open TAP %s: %s\n", options_.tap.c_str(), std::strerror(errno));
        return 2;
    }
    listen_fd_ = listen_unix(options_.socket_path);
    if (listen_fd_ < 0) {
        std::fprintf(stderr, "vnic: cannot listen on %s: %s\n", options_.socket_path.c_str(),
                     std::strerror(errno));
        return 2;
    }
    if (!options_.pcap.empty() && !pcap_.open(options_.pcap)) {
        std::fprintf(stderr, "vnic: cannot write %s\n", options_.pcap.c_str());
        return 2;
    }
    start_ns_ = now_ns();
    reset();
    std::printf("ready %s %s\n", options_.tap.c_str(), options_.socket_path.c_str());
    std::fflush(stdout);

    uint64_t deadline = options_.max_seconds > 0 ? start_ns_ + uint64_t(options_.max_seconds * 1e9) : 0;
    while (!g_stop) {
        tick_target_ = (now_ns() - start_ns_) / 1000;
        for (int i = 0; i < 64; i++) cycle();
        bool sleepy = !options_.busy_poll && idle_ > 20000 && out_.empty() && ticks_ >= tick_target_;
        service(sleepy ? 1 : 0);
        if (deadline && now_ns() > deadline) break;
        pcap_.flush();  // a capture is complete up to the last frame, even after SIGKILL
    }
    flush_client();
    write_stats_file();
    pcap_.close();
    unlink(options_.socket_path.c_str());
    close(listen_fd_);
    if (client_fd_ >= 0) close(client_fd_);
    close(tap_fd_);  // a TAP this process created disappears with its last descriptor
    return 0;
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: vnic --tap NAME --socket PATH [--hello FILE] [--csr ADDR=VALUE]...\n"
                 "            [--pcap FILE] [--stats FILE] [--busy-poll] [--loss P] [--duplicate P]\n"
                 "            [--reorder P] [--seed N] [--max-seconds S]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage();
            return argv[++i];
        };
        if (arg == "--tap") options.tap = value();
        else if (arg == "--socket") options.socket_path = value();
        else if (arg == "--hello") options.hello = read_file(value());
        else if (arg == "--pcap") options.pcap = value();
        else if (arg == "--stats") options.stats = value();
        else if (arg == "--busy-poll") options.busy_poll = true;
        else if (arg == "--loss") options.loss = std::atof(value().c_str());
        else if (arg == "--duplicate") options.duplicate = std::atof(value().c_str());
        else if (arg == "--reorder") options.reorder = std::atof(value().c_str());
        else if (arg == "--seed") options.seed = std::strtoull(value().c_str(), nullptr, 0);
        else if (arg == "--max-seconds") options.max_seconds = std::atof(value().c_str());
        else if (arg == "--csr") {
            std::string text = value();
            size_t eq = text.find('=');
            if (eq == std::string::npos) usage();
            options.csr.push_back({uint16_t(std::strtoul(text.substr(0, eq).c_str(), nullptr, 0)),
                                   uint32_t(std::strtoul(text.substr(eq + 1).c_str(), nullptr, 0))});
        } else usage();
    }
    if (options.tap.empty() || options.socket_path.empty()) usage();
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    auto context = std::make_unique<VerilatedContext>();
    VirtualNic nic(context.get(), options);
    return nic.run();
}
