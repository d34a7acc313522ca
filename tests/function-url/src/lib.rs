//! A local stand-in for a Lambda function URL with `AuthType: AWS_IAM`, for the stack in AWS's
//! shape (`make test`): it refuses what AWS would refuse ([`verify`]) and passes the rest to a
//! function under `cargo lambda watch` ([`front`]). [`sign`] signs test requests the way an AWS
//! SDK would, for the tests that talk to a front directly. Test infrastructure only.

pub mod front;
pub mod sign;
pub mod verify;
