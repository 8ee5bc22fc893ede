//! The vocabulary interpreters speak: phases, signals, usage and upstream timings.

use serde::Serialize;

/// Where a request stands. `Accepted`/`Connecting` are set by the proxy before any upstream
/// byte; interpreters move between `Waiting`..`Generating` and end in `Done` or `Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Accepted,
    Connecting,
    Queued,
    Waiting,
    Thinking,
    Tool,
    Generating,
    Done,
    Error,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Accepted => "accepted",
            Phase::Connecting => "connecting",
            Phase::Queued => "queued",
            Phase::Waiting => "waiting",
            Phase::Thinking => "thinking",
            Phase::Tool => "tool",
            Phase::Generating => "generating",
            Phase::Done => "done",
            Phase::Error => "error",
        }
    }

    /// `Done` and `Error` are final: nothing moves a stream out of them.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::Error)
    }
}

/// Token counts as the upstream reported them (the last report wins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub reasoning: Option<u64>,
}

/// Durations an upstream reports about itself (Ollama), in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamTimings {
    pub total_ns: Option<u64>,
    pub load_ns: Option<u64>,
    pub prompt_eval_ns: Option<u64>,
    pub eval_ns: Option<u64>,
}

/// One observation derived from the stream, in stream order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// The phase changed (emitted only on change).
    Phase(Phase),
    /// Some reasoning text (or an opaque reasoning marker with `chars: 0`) arrived.
    ReasoningDelta {
        chars: usize,
    },
    /// Some answer text arrived.
    AnswerDelta {
        chars: usize,
    },
    /// A tool call (function, web search, code execution...) started.
    ToolCall {
        name: String,
    },
    /// A one-line heading for the current reasoning step.
    Label(String),
    Usage(Usage),
    Timings(UpstreamTimings),
    Finish {
        reason: String,
    },
    UpstreamError {
        message: String,
    },
}
