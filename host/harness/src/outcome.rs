//! What one hook call gave, with the plugin's log lines of that call, and
//! assertions on it. The `expect_*` methods panic with a message that says
//! what was expected, what the plugin did instead, and what it logged.

use std::fmt::Write as _;

use tailgate_runtime::{
    HookFault, ImmediateResponse, LogLine, LogVerdict, RequestAction, RequestEdits, ResponseEdits,
};

use crate::inspect::{describe_action, describe_log_verdict, describe_response_edits, FaultKind};
use crate::plugin_logs::{format_logs, PluginLog};

/// Which call an outcome is of, and what the plugin logged during it.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub plugin: String,
    pub route: String,
    /// `on-request`, `on-response` or `on-log`.
    pub hook: &'static str,
    pub logs: Vec<PluginLog>,
}

impl CallContext {
    /// A failure message: the expectation, what happened, and the plugin's log.
    pub fn failure(&self, expected: &str, got: &str) -> String {
        let mut out = format!(
            "plugin {} (route {}), {}: expected {expected}, but it {got}\nplugin log during the call:\n",
            self.plugin, self.route, self.hook
        );
        let _ = write!(out, "{}", format_logs(&self.logs));
        out
    }
}

fn describe_fault(fault: &HookFault) -> String {
    format!(
        "failed with a {} fault: {fault}",
        FaultKind::of(fault).as_str()
    )
}

macro_rules! common_accessors {
    ($value:ty) => {
        /// The hook's value, or the fault that stopped it.
        pub fn result(&self) -> &Result<$value, HookFault> {
            &self.result
        }

        /// The plugin's own log lines during this call.
        pub fn logs(&self) -> &[PluginLog] {
            &self.context.logs
        }

        pub fn context(&self) -> &CallContext {
            &self.context
        }

        pub fn fault(&self) -> Option<&HookFault> {
            self.result.as_ref().err()
        }

        /// Panics unless the call ended in a fault of `kind`.
        #[track_caller]
        pub fn expect_fault(&self, kind: FaultKind) -> &HookFault {
            match &self.result {
                Err(fault) if FaultKind::of(fault) == kind => fault,
                Err(fault) => panic!(
                    "{}",
                    self.context.failure(
                        &format!("a {} fault", kind.as_str()),
                        &describe_fault(fault)
                    )
                ),
                Ok(value) => panic!(
                    "{}",
                    self.context.failure(
                        &format!("a {} fault", kind.as_str()),
                        &Self::describe_value(value)
                    )
                ),
            }
        }

        /// Panics unless the plugin logged a line containing `text`.
        #[track_caller]
        pub fn expect_logged(&self, text: &str) -> &Self {
            if !self.context.logs.iter().any(|l| l.message.contains(text)) {
                panic!(
                    "{}",
                    self.context.failure(
                        &format!("a log line containing {text:?}"),
                        "logged no such line"
                    )
                );
            }
            self
        }

        #[track_caller]
        fn value(&self, expected: &str) -> &$value {
            match &self.result {
                Ok(value) => value,
                Err(fault) => panic!("{}", self.context.failure(expected, &describe_fault(fault))),
            }
        }
    };
}

/// What `on-request` gave.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    pub(crate) result: Result<RequestAction, HookFault>,
    pub(crate) context: CallContext,
}

impl RequestOutcome {
    common_accessors!(RequestAction);

    fn describe_value(action: &RequestAction) -> String {
        format!("returned {}", describe_action(action))
    }

    /// The action, if the call did not fault.
    pub fn action(&self) -> Option<&RequestAction> {
        self.result.as_ref().ok()
    }

    /// Panics unless the request goes on; returns its edits.
    #[track_caller]
    pub fn expect_continue(&self) -> &RequestEdits {
        match self.value("continue") {
            RequestAction::Continue(edits) => edits,
            other => panic!(
                "{}",
                self.context
                    .failure("continue", &Self::describe_value(other))
            ),
        }
    }

    /// Panics unless the plugin answered the request; returns the answer.
    #[track_caller]
    pub fn expect_respond(&self) -> &ImmediateResponse {
        match self.value("respond") {
            RequestAction::Respond(resp) => resp,
            other => panic!(
                "{}",
                self.context
                    .failure("respond", &Self::describe_value(other))
            ),
        }
    }

    /// Panics unless the plugin answered with `status`.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &ImmediateResponse {
        let expected = format!("respond {status}");
        match self.value(&expected) {
            RequestAction::Respond(resp) if resp.status == status => resp,
            other => panic!(
                "{}",
                self.context
                    .failure(&expected, &Self::describe_value(other))
            ),
        }
    }
}

/// What `on-response` gave.
#[derive(Debug, Clone)]
pub struct ResponseOutcome {
    pub(crate) result: Result<ResponseEdits, HookFault>,
    pub(crate) context: CallContext,
}

impl ResponseOutcome {
    common_accessors!(ResponseEdits);

    fn describe_value(edits: &ResponseEdits) -> String {
        format!("returned {}", describe_response_edits(edits))
    }

    /// Panics if the call faulted; returns the edits.
    #[track_caller]
    pub fn expect_edits(&self) -> &ResponseEdits {
        self.value("response edits")
    }
}

/// What `on-log` gave.
#[derive(Debug, Clone)]
pub struct LogOutcome {
    pub(crate) result: Result<LogVerdict, HookFault>,
    pub(crate) context: CallContext,
}

impl LogOutcome {
    common_accessors!(LogVerdict);

    fn describe_value(verdict: &LogVerdict) -> String {
        describe_log_verdict(verdict)
    }

    /// Panics unless the plugin shaped a line; returns it.
    #[track_caller]
    pub fn expect_line(&self) -> &LogLine {
        match self.value("a shaped log line") {
            LogVerdict::Shape(line) => line,
            other => panic!(
                "{}",
                self.context
                    .failure("a shaped log line", &describe_log_verdict(other))
            ),
        }
    }

    /// Panics unless the plugin dropped the line.
    #[track_caller]
    pub fn expect_dropped(&self) {
        let verdict = self.value("the line dropped");
        if *verdict != LogVerdict::Drop {
            panic!(
                "{}",
                self.context
                    .failure("the line dropped", &describe_log_verdict(verdict))
            );
        }
    }

    /// Panics unless the plugin kept the line as it was (an observer).
    #[track_caller]
    pub fn expect_kept(&self) {
        let verdict = self.value("the line kept");
        if *verdict != LogVerdict::Keep {
            panic!(
                "{}",
                self.context
                    .failure("the line kept", &describe_log_verdict(verdict))
            );
        }
    }

    /// The value of label `name` of the shaped line.
    pub fn label(&self, name: &str) -> Option<&str> {
        let LogVerdict::Shape(line) = self.result.as_ref().ok()? else {
            return None;
        };
        line.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
