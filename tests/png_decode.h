// A PNG decoded far enough to check a figure: its size and how many
// distinct colours its pixels hold (8-bit RGB or RGBA, non-interlaced: what
// gnuplot's pngcairo writes).
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

namespace zt_test {

inline uint32_t be32(const std::string& s, size_t at) {
    return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 |
           uint32_t(uint8_t(s[at + 2])) << 8 | uint32_t(uint8_t(s[at + 3]));
}

struct Png {
    uint32_t width = 0, height = 0;
    size_t colours = 0;  // distinct pixel values
    std::string error;
};

// Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what pngcairo writes)
// far enough to count its distinct colours.
inline Png decode_png(const std::string& data) {
    Png png;
    if (data.size() < 33 || data.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) {
        png.error = "no PNG signature";
        return png;
    }
    png.width = be32(data, 16);
    png.height = be32(data, 20);
    const int depth = uint8_t(data[24]), type = uint8_t(data[25]), interlace = uint8_t(data[28]);
    const int channels = type == 2 ? 3 : type == 6 ? 4 : 0;
    if (depth != 8 || channels == 0 || interlace != 0) {
        png.error = "not 8-bit RGB(A), non-interlaced";
        return png;
    }
    std::string idat;
    for (size_t at = 8; at + 8 <= data.size();) {
        const uint32_t len = be32(data, at);
        const std::string type_name = data.substr(at + 4, 4);
        if (type_name == "IDAT") idat += data.substr(at + 8, len);
        at += 12 + len;
    }
    const size_t stride = size_t(png.width) * channels;
    std::vector<uint8_t> raw((stride + 1) * png.height);
    uLongf raw_len = raw.size();
    if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()),
                   idat.size()) != Z_OK ||
        raw_len != raw.size()) {
        png.error = "IDAT does not inflate to the image's size";
        return png;
    }
    std::vector<uint8_t> prev(stride, 0), row(stride);
    std::set<uint32_t> colours;
    for (uint32_t y = 0; y < png.height; y++) {
        const uint8_t filter = raw[y * (stride + 1)];
        const uint8_t* in = &raw[y * (stride + 1) + 1];
        for (size_t i = 0; i < stride; i++) {
            const int a = i >= size_t(channels) ? row[i - channels] : 0, b = prev[i],
                      c = i >= size_t(channels) ? prev[i - channels] : 0;
            int pred = 0;
            if (filter == 1) pred = a;
            if (filter == 2) pred = b;
            if (filter == 3) pred = (a + b) / 2;
            if (filter == 4) {
                const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b),
                          pc = std::abs(p - c);
                pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
            }
            row[i] = uint8_t(in[i] + pred);
        }
        for (uint32_t x = 0; x < png.width; x++) {
            const uint8_t* p = &row[size_t(x) * channels];
            colours.insert(uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2]);
        }
        prev = row;
    }
    png.colours = colours.size();
    return png;
}

}  // namespace zt_test
