// Safetensors reader/writer: round trips, dtype conversion, atomic writes, and
// one hand-built hostile file per header check, each of which must be refused
// with a zt::Error naming the file (and never read out of bounds).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "ckpt/safetensors.h"
#include "core/check.h"
#include "core/dtype.h"
#include "test_util.h"

namespace {

using zt::SafetensorsFile;
using zt::SafetensorsWriter;
using zt_test::TempDir;

// A file made of: u64 little-endian `len` (header.size() unless given), the
// header bytes, then `data_bytes` bytes of buffer.
void write_file(const std::string& path, const std::string& header, size_t data_bytes,
                uint64_t len = UINT64_MAX) {
    if (len == UINT64_MAX) len = header.size();
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(&len), 8);
    f.write(header.data(), std::streamsize(header.size()));
    std::string data(data_bytes, '\x5a');
    f.write(data.data(), std::streamsize(data.size()));
    ASSERT_TRUE(f.good());
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), std::streamsize(bytes.size()));
    ASSERT_TRUE(f.good());
}

std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// open() must throw zt::Error whose message names the file and contains
// `fragment`, so the test pins which check fired.
void expect_refused(const std::string& path, const std::string& fragment) {
    try {
        SafetensorsFile::open(path);
        ADD_FAILURE() << "opened a hostile file; expected an error containing '" << fragment << "'";
    } catch (const zt::Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
        EXPECT_NE(msg.find(fragment), std::string::npos) << "wrong check fired: " << msg;
    }
}

// A one-tensor header: F32 shape (2) at [0, 8), with `entry` replacing the
// tensor's entry when given.
std::string one_tensor(
    const std::string& entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})") {
    return R"({"w":)" + entry + "}";
}

TEST(SafetensorsRoundTrip, SeveralDtypesShapesAndMetadata) {
    TempDir dir;
    const std::string path = dir / "model.safetensors";

    const float f32[6] = {1.5f, -2.0f, 0.0f, 3.25f, -0.0f, 1e-30f};  // (2, 3)
    const uint16_t bf[4] = {0x3f80, 0xc000, 0x7f80, 0x0001};         // (4,)
    const int32_t i32[3] = {-7, 0, 2147483647};                      // (3,)
    const float scalar = 42.0f;                                      // 0-d
    const int64_t i64[2] = {-1, int64_t(1) << 40};                   // (2,)

    SafetensorsWriter w;
    w.add("layer.weight", "F32", {2, 3}, f32, sizeof(f32));
    w.add("layer.bf", "BF16", {4}, bf, sizeof(bf));
    w.add("ids", "I32", {3}, i32, sizeof(i32));
    w.add("scalar", "F32", {}, &scalar, 4);
    w.add("empty", "F32", {0, 5}, nullptr, 0);
    w.add("big", "I64", {2}, i64, sizeof(i64));
    w.set_metadata("format", "pt");
    w.set_metadata("step", "1234");
    w.write(path);

    // The header length is a multiple of 8 so the data buffer starts 8-aligned.
    uint64_t n = 0;
    std::string raw = read_bytes(path);
    ASSERT_GE(raw.size(), 8u);
    std::memcpy(&n, raw.data(), 8);
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ(raw.size(), 8 + n + sizeof(f32) + sizeof(bf) + sizeof(i32) + 4 + sizeof(i64));

    SafetensorsFile f = SafetensorsFile::open(path);
    EXPECT_EQ(f.tensors().size(), 6u);
    EXPECT_EQ(f.metadata().size(), 2u);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_EQ(f.metadata().at("step"), "1234");
    EXPECT_EQ(f.find("missing"), nullptr);

    auto check = [&](const char* name, const char* dtype, std::vector<int64_t> shape,
                     const void* want, size_t bytes) {
        const zt::SafetensorsTensor* t = f.find(name);
        ASSERT_NE(t, nullptr) << name;
        EXPECT_EQ(t->name, name);
        EXPECT_EQ(t->dtype, dtype);
        EXPECT_EQ(t->shape, shape);
        EXPECT_EQ(t->end - t->begin, int64_t(bytes));
        // The data buffer starts 8-aligned; tensors sit at their offset in it.
        EXPECT_EQ((reinterpret_cast<uintptr_t>(f.data(*t)) - uintptr_t(t->begin)) % 8, 0u) << name;
        if (bytes) {
            EXPECT_EQ(std::memcmp(f.data(*t), want, bytes), 0) << name;
        }
    };
    check("layer.weight", "F32", {2, 3}, f32, sizeof(f32));
    check("layer.bf", "BF16", {4}, bf, sizeof(bf));
    check("ids", "I32", {3}, i32, sizeof(i32));
    check("scalar", "F32", {}, &scalar, 4);
    check("empty", "F32", {0, 5}, nullptr, 0);
    check("big", "I64", {2}, i64, sizeof(i64));

    // Offsets follow insertion order.
    EXPECT_EQ(f.find("layer.weight")->begin, 0);
    EXPECT_EQ(f.find("layer.bf")->begin, int64_t(sizeof(f32)));

    float out[6];
    f.read_f32("layer.weight", out, 6);
    EXPECT_EQ(std::memcmp(out, f32, sizeof(f32)), 0);  // F32 is copied bit for bit
    f.read_f32("scalar", out, 1);
    EXPECT_EQ(out[0], 42.0f);
    f.read_f32("empty", out, 0);

    // Moving keeps the mapping alive in the new owner.
    SafetensorsFile g = std::move(f);
    g.read_f32("scalar", out, 1);
    EXPECT_EQ(out[0], 42.0f);
}

TEST(SafetensorsRoundTrip, EmptyFileWithoutTensors) {
    TempDir dir;
    SafetensorsWriter w;
    w.write(dir / "e.safetensors");
    SafetensorsFile f = SafetensorsFile::open(dir / "e.safetensors");
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_TRUE(f.metadata().empty());
}

TEST(SafetensorsReadF32, Bf16MatchesCoreConversion) {
    TempDir dir;
    const std::string path = dir / "bf.safetensors";
    // Normal, negative, zero, -0, max, min subnormal, Inf, -Inf, a NaN.
    std::vector<uint16_t> bits = {0x3f80, 0xbfc0, 0x0000, 0x8000, 0x7f7f,
                                  0x0001, 0x7f80, 0xff80, 0x7fc1};
    for (float v : {3.14159f, -1e-20f, 65504.0f, 1e38f}) bits.push_back(zt::f32_to_bf16(v).bits);
    SafetensorsWriter w;
    w.add("x", "BF16", {int64_t(bits.size())}, bits.data(), int64_t(bits.size() * 2));
    w.write(path);

    SafetensorsFile f = SafetensorsFile::open(path);
    std::vector<float> out(bits.size());
    f.read_f32("x", out.data(), int64_t(out.size()));
    for (size_t i = 0; i < bits.size(); ++i) {
        float want = zt::bf16_to_f32(zt::bf16{bits[i]});
        // Bitwise: the conversion is exact, and NaN must stay the same NaN.
        EXPECT_EQ(std::memcmp(&out[i], &want, 4), 0) << "element " << i;
    }
}

TEST(SafetensorsReadF32, F16KnownValues) {
    TempDir dir;
    const std::string path = dir / "h.safetensors";
    const uint16_t bits[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0x3555, 0x8000};
    const float want[] = {1.0f,
                          -2.0f,
                          65504.0f,
                          std::ldexp(1.0f, -24),
                          std::ldexp(1023.0f, -24),
                          std::numeric_limits<float>::infinity(),
                          0.333251953125f,
                          -0.0f};
    SafetensorsWriter w;
    w.add("h", "F16", {8}, bits, sizeof(bits));
    w.add("nan", "F16", {1}, "\x01\x7e", 2);  // 0x7e01
    w.write(path);
    SafetensorsFile f = SafetensorsFile::open(path);
    float out[8];
    f.read_f32("h", out, 8);
    for (int i = 0; i < 8; ++i) {
        // Every value is exactly representable in f32, so the error must be 0.
        EXPECT_EQ(std::memcmp(&out[i], &want[i], 4), 0) << "element " << i << " got " << out[i];
    }
    f.read_f32("nan", out, 1);
    EXPECT_TRUE(std::isnan(out[0]));
}

TEST(SafetensorsReadF32, RefusesOtherDtypesAndCountMismatch) {
    TempDir dir;
    const std::string path = dir / "r.safetensors";
    const int32_t ids[2] = {1, 2};
    const float x[3] = {1, 2, 3};
    SafetensorsWriter w;
    w.add("token_ids", "I32", {2}, ids, sizeof(ids));
    w.add("weights", "F32", {3}, x, sizeof(x));
    w.write(path);
    SafetensorsFile f = SafetensorsFile::open(path);
    float out[4];
    auto expect_msg = [&](auto fn, const char* a, const char* b) {
        try {
            fn();
            ADD_FAILURE() << "expected an error mentioning " << a;
        } catch (const zt::Error& e) {
            std::string msg = e.what();
            EXPECT_NE(msg.find(a), std::string::npos) << msg;
            EXPECT_NE(msg.find(b), std::string::npos) << msg;
        }
    };
    expect_msg([&] { f.read_f32("token_ids", out, 2); }, "token_ids", "I32");
    expect_msg([&] { f.read_f32("weights", out, 4); }, "weights", "3 elements");
    expect_msg([&] { f.read_f32("nope", out, 1); }, "nope", "no tensor");
}

TEST(SafetensorsWriter, AtomicWriteLeavesNoTmpAndReplaces) {
    TempDir dir;
    const std::string path = dir / "ckpt.safetensors";
    const float a = 1.0f, b = 2.0f;
    SafetensorsWriter w1;
    w1.add("v", "F32", {}, &a, 4);
    w1.write(path);
    SafetensorsWriter w2;
    w2.add("v", "F32", {}, &b, 4);
    w2.write(path);  // overwrites through the rename
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    size_t files = 0;
    for (auto& e : std::filesystem::directory_iterator(dir.path())) files += !e.path().empty();
    EXPECT_EQ(files, 1u);
    float out = 0;
    SafetensorsFile::open(path).read_f32("v", &out, 1);
    EXPECT_EQ(out, 2.0f);
}

TEST(SafetensorsWriter, RefusesBadAdds) {
    SafetensorsWriter w;
    const float x[4] = {};
    w.add("a", "F32", {2, 2}, x, 16);
    EXPECT_THROW(w.add("a", "F32", {2, 2}, x, 16), zt::Error);  // duplicate
    EXPECT_THROW(w.add("b", "F32", {2, 2}, x, 12), zt::Error);  // byte count
    EXPECT_THROW(w.add("c", "F33", {1}, x, 4), zt::Error);      // dtype
    EXPECT_THROW(w.add("d", "F32", {-1}, x, 4), zt::Error);     // negative dim
    EXPECT_THROW(w.add("__metadata__", "F32", {1}, x, 4), zt::Error);
    EXPECT_THROW(w.add("e", "U8", {INT64_MAX, 2}, x, 4), zt::Error);  // overflow
}

// ---- hostile files: one per header check -----------------------------------

TEST(SafetensorsHostile, ShorterThanEightBytes) {
    TempDir dir;
    const std::string path = dir / "short.safetensors";
    for (size_t n : {0, 1, 7}) {
        write_bytes(path, std::string(n, '\0'));
        expect_refused(path, "shorter than the 8-byte");
    }
}

TEST(SafetensorsHostile, MissingFile) {
    TempDir dir;
    expect_refused(dir / "absent.safetensors", "cannot open");
}

TEST(SafetensorsHostile, HeaderLengthBeyondFile) {
    TempDir dir;
    const std::string path = dir / "len.safetensors";
    const std::string h = one_tensor();
    write_file(path, h, 8, h.size() + 9);  // one byte more than the file holds
    expect_refused(path, "exceeds the");
    write_file(path, h, 8, UINT64_MAX - 3);  // would wrap an unchecked 8 + n
    expect_refused(path, "exceeds the");
}

TEST(SafetensorsHostile, HeaderLengthOverLimit) {
    TempDir dir;
    const std::string path = dir / "huge.safetensors";
    const uint64_t n = (100ull << 20) + 1;
    write_file(path, "", 0, n);
    std::filesystem::resize_file(path, 8 + n);  // sparse: cheap on disk
    expect_refused(path, "limit");
}

TEST(SafetensorsHostile, HeaderNotJson) {
    TempDir dir;
    const std::string path = dir / "nj.safetensors";
    write_file(path, R"({"w": {"dtype": "F32", )", 0);
    expect_refused(path, "not valid JSON");
    write_file(path, "{\"w\xff\": 1}", 0);  // invalid UTF-8
    expect_refused(path, "not valid JSON");
    write_file(path, "{}\x01", 0);  // trailing garbage after the object
    expect_refused(path, "not valid JSON");
    write_file(path, "", 0);
    expect_refused(path, "starting with '{'");
}

TEST(SafetensorsHostile, HeaderNotObject) {
    TempDir dir;
    const std::string path = dir / "arr.safetensors";
    write_file(path, "[1, 2]", 0);
    expect_refused(path, "starting with '{'");
    write_file(path, one_tensor("[1]"), 8);
    expect_refused(path, "expected an object");
}

TEST(SafetensorsHostile, MissingOrMistypedFields) {
    TempDir dir;
    const std::string path = dir / "f.safetensors";
    struct Case {
        const char* entry;
        const char* fragment;
    } cases[] = {
        {R"({"shape":[2],"data_offsets":[0,8]})", "'dtype'"},
        {R"({"dtype":7,"shape":[2],"data_offsets":[0,8]})", "'dtype'"},
        {R"({"dtype":"F32","data_offsets":[0,8]})", "'shape'"},
        {R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})", "'shape'"},
        {R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", "non-negative integer"},
        {R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})", "non-negative integer"},
        {R"({"dtype":"F32","shape":[2]})", "'data_offsets'"},
        {R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,16]})", "'data_offsets'"},
        {R"({"dtype":"F32","shape":[2],"data_offsets":{"a":0}})", "'data_offsets'"},
        {R"({"dtype":"F32","shape":[2],"data_offsets":[0,"8"]})", "not non-negative integers"},
        {R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})", "not non-negative integers"},
        {R"({"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]})",
         "not non-negative integers"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.entry);
        write_file(path, one_tensor(c.entry), 8);
        expect_refused(path, c.fragment);
    }
}

TEST(SafetensorsHostile, UnknownDtype) {
    TempDir dir;
    const std::string path = dir / "dt.safetensors";
    write_file(path, one_tensor(R"({"dtype":"F31","shape":[2],"data_offsets":[0,8]})"), 8);
    expect_refused(path, "unknown dtype 'F31'");
}

TEST(SafetensorsHostile, NegativeDimAndShapeOverflow) {
    TempDir dir;
    const std::string path = dir / "sh.safetensors";
    write_file(path, one_tensor(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), 8);
    expect_refused(path, "non-negative integer");
    write_file(
        path, one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"),
        8);
    expect_refused(path, "overflows");
}

TEST(SafetensorsHostile, BadOffsets) {
    TempDir dir;
    const std::string path = dir / "off.safetensors";
    write_file(path, one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), 8);
    expect_refused(path, "begin > end");
    write_file(path, one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[4,12]})"), 8);
    expect_refused(path, "beyond the");
    write_file(path, one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), 4);
    expect_refused(path, "beyond the");  // truncated data buffer
    write_file(path, one_tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), 8);
    expect_refused(path, "needs 12");
}

TEST(SafetensorsHostile, OverlapHoleAndTrailingBytes) {
    TempDir dir;
    const std::string path = dir / "ov.safetensors";
    write_file(path,
               R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               12);
    expect_refused(path, "overlaps");
    write_file(path,
               R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
               8);
    expect_refused(path, "overlaps");  // two names aliasing the same bytes
    write_file(path,
               R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
               12);
    expect_refused(path, "hole");
    write_file(path, one_tensor(), 16);
    expect_refused(path, "trailing");
}

TEST(SafetensorsHostile, DuplicateKeys) {
    TempDir dir;
    const std::string path = dir / "dup.safetensors";
    write_file(path,
               R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
               8);
    expect_refused(path, "repeats the key 'w'");
    write_file(path,
               one_tensor(R"({"dtype":"I64","dtype":"F32","shape":[2],"data_offsets":[0,8]})"), 8);
    expect_refused(path, "repeats the key 'dtype'");
    write_file(path, R"({"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}})", 0);
    expect_refused(path, "repeats the key '__metadata__'");
}

TEST(SafetensorsHostile, MetadataNotStrings) {
    TempDir dir;
    const std::string path = dir / "md.safetensors";
    write_file(path, R"({"__metadata__":{"step":12}})", 0);
    expect_refused(path, "__metadata__['step']");
    write_file(path, R"({"__metadata__":["a"]})", 0);
    expect_refused(path, "__metadata__ is not an object");
}

TEST(SafetensorsHostile, PaddedHeaderIsAccepted) {
    // Not hostile: the format allows trailing spaces in the header.
    TempDir dir;
    const std::string path = dir / "pad.safetensors";
    write_file(path, one_tensor() + "       ", 8);
    SafetensorsFile f = SafetensorsFile::open(path);
    ASSERT_NE(f.find("w"), nullptr);
    EXPECT_EQ(f.find("w")->end, 8);
}

// Every single-byte change of the header and every truncation must end in
// success or zt::Error; a crash or sanitizer report fails the run.
TEST(SafetensorsFuzz, HeaderByteFlipsAndTruncations) {
    TempDir dir;
    const std::string good = dir / "good.safetensors";
    const std::string path = dir / "fuzz.safetensors";
    const float x[3] = {1, 2, 3};
    const uint16_t h[2] = {0x3f80, 0x4000};
    SafetensorsWriter w;
    w.add("x", "F32", {3}, x, sizeof(x));
    w.add("h", "BF16", {1, 2}, h, sizeof(h));
    w.add("s", "I32", {}, x, 4);
    w.set_metadata("k", "v");
    w.write(good);
    const std::string bytes = read_bytes(good);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    const size_t header_end = size_t(8 + n);

    auto start = std::chrono::steady_clock::now();
    size_t opened = 0, refused = 0;
    auto attempt = [&](const std::string& b) {
        write_bytes(path, b);
        try {
            SafetensorsFile f = SafetensorsFile::open(path);
            float out[3];
            for (const auto& t : f.tensors()) {  // touch every byte the header promises
                int64_t count = zt::safetensors_numel(t.shape);
                if ((t.dtype == "F32" || t.dtype == "BF16") && count <= 3) {
                    f.read_f32(t.name, out, count);
                }
                volatile uint8_t sink = 0;
                const uint8_t* p = static_cast<const uint8_t*>(f.data(t));
                for (int64_t i = 0; i < t.end - t.begin; ++i) sink = sink ^ p[i];
            }
            ++opened;
        } catch (const zt::Error&) {
            ++refused;
        }
    };
    for (size_t i = 0; i < header_end; ++i) {
        for (uint8_t flip : {0x01, 0x20, 0x80, 0xff}) {
            std::string b = bytes;
            b[i] = char(uint8_t(b[i]) ^ flip);
            attempt(b);
        }
    }
    for (size_t len = 0; len <= header_end; ++len) attempt(bytes.substr(0, len));
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_GT(refused, 0u);
    EXPECT_GT(opened, 0u);  // some flips (e.g. inside a name) leave a valid file
    EXPECT_LT(seconds, 5.0) << "fuzz loop should take well under a second";
    std::printf("[fuzz] %zu opened, %zu refused in %.3f s\n", opened, refused, seconds);
}

}  // namespace
