// The resolver page's rendering of one value (http/ui.h) from arbitrary bytes: the standard types'
// decoders run on it, and whatever the data, the HTML holds only the markup the renderer writes
// (every '<' opens one of its own tags) and links only to this node (never "//host") or to safe
// schemes.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "idnode/http/ui.h"

namespace {

constexpr std::string_view kTypes[] = {
    "URL",       "EMAIL",   "HS_ADMIN", "HS_SITE",        "HS_VLIST",
    "HS_PUBKEY", "HS_SERV", "DESC",     "HS_SITE.PREFIX", "URL.MIRROR"};
constexpr std::string_view kTags[] = {"<a ",   "</a>",   "<span ", "</span>", "<br>",
                                      "<div ", "</div>", "<ul ",   "</ul>",   "<li>",
                                      "</li>", "<code>", "</code>"};

bool Starts(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

void Check(const std::string& html) {
  std::string_view rest(html);
  for (size_t at = rest.find('<'); at != std::string_view::npos; at = rest.find('<', at + 1)) {
    bool known = false;
    for (auto tag : kTags) known = known || Starts(rest.substr(at), tag);
    if (!known) std::abort();  // markup the renderer did not write
  }
  for (size_t at = rest.find("href=\""); at != std::string_view::npos;
       at = rest.find("href=\"", at + 1)) {
    // This node's own pages, or a scheme that runs no code (in any letter case).
    std::string lower;
    for (size_t i = at + 6; i < rest.size() && i < at + 6 + 16; ++i)
      lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(rest[i]))));
    if (!((Starts(lower, "/") && !Starts(lower, "//")) || Starts(lower, "http://") ||
          Starts(lower, "https://") || Starts(lower, "ftp://") || Starts(lower, "mailto:"))) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  idnode::proto::Value value;
  value.set_index(1);
  value.set_type(std::string(kTypes[data[0] % std::size(kTypes)]));
  value.set_data(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  Check(idnode::http::ui::RenderValueData(value));
  return 0;
}
