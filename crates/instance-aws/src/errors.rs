//! EC2 failures as [`infrakit_spi::Error`]s.
//!
//! An answer from EC2 keeps its error code and message, so a missing permission reads
//! `RunInstances: UnauthorizedOperation: You are not authorized to perform this operation...`
//! and a bad AMI `RunInstances: InvalidAMIID.NotFound: ...`. Failures to reach EC2 say so, with
//! the whole chain of causes. Throttling and transient failures never get here before the
//! SDK's retries (see [`crate::config`]) are spent.

use std::error::Error as StdError;
use std::fmt::Debug;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use infrakit_spi::Error;

/// The error code of a request naming an instance that does not exist.
pub const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";
/// The error code of a request naming a volume that does not exist.
pub const VOLUME_NOT_FOUND: &str = "InvalidVolume.NotFound";

/// The EC2 error code of `e`, if EC2 answered with one.
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.code()
}

/// `e`, from the call `what` (e.g. `RunInstances`), as an SPI error.
pub fn sdk_error<E, R>(what: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: Debug + 'static,
{
    if let Some(code) = e.code() {
        let message = e.message().unwrap_or("(no message)");
        return Error::plugin(format!("{what}: {code}: {message}"));
    }
    let context = DisplayErrorContext(&e).to_string();
    match e {
        SdkError::DispatchFailure(_) => {
            Error::plugin(format!("{what}: cannot reach EC2: {context}"))
        }
        SdkError::TimeoutError(_) => {
            Error::plugin(format!("{what}: EC2 did not answer in time: {context}"))
        }
        _ => Error::plugin(format!("{what}: {context}")),
    }
}

/// Any other error of the SDK (a waiter's, say), with its chain of causes.
pub fn other(what: &str, e: &(dyn StdError + 'static)) -> Error {
    Error::plugin(format!("{what}: {}", DisplayErrorContext(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::config::http::HttpResponse;
    use aws_sdk_ec2::error::ErrorMetadata;
    use aws_sdk_ec2::operation::run_instances::RunInstancesError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;

    fn answer(code: &str, message: &str) -> SdkError<RunInstancesError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        SdkError::service_error(
            RunInstancesError::generic(meta),
            HttpResponse::new(403.try_into().unwrap(), SdkBody::empty()),
        )
    }

    #[test]
    fn answers_keep_their_code_and_message() {
        let e = answer(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        );
        assert_eq!(code(&e), Some("UnauthorizedOperation"));
        assert_eq!(
            sdk_error("RunInstances", e).to_string(),
            "RunInstances: UnauthorizedOperation: You are not authorized to perform this operation."
        );
    }

    #[test]
    fn unreachable_endpoints_say_so() {
        let e: SdkError<RunInstancesError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        assert_eq!(code(&e), None);
        let text = sdk_error("DescribeInstances", e).to_string();
        assert!(
            text.starts_with("DescribeInstances: cannot reach EC2: ")
                && text.contains("connection refused"),
            "{text}"
        );
    }
}
