// Human-readable rendering of decoded messages, in the shape of the reference transcripts
// (../shared/vectors/handle/session-*.decoded.txt). For tools and logs, not for request paths.
#pragma once

#include <string>

#include "idnode/protocol/message.h"

namespace idnode::protocol {

std::string Describe(const Message& message);

}  // namespace idnode::protocol
