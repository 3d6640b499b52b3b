//! Which device a run uses: `auto`, `cpu`, `cuda` or `cuda:N`.

use crate::error::{TrainerError, TrainerResult};
use engine::Device;

/// What a device string asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

pub fn parse_device(s: &str) -> TrainerResult<DeviceRequest> {
    match s {
        "auto" => Ok(DeviceRequest::Auto),
        "cpu" => Ok(DeviceRequest::Cpu),
        "cuda" => Ok(DeviceRequest::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Ok(DeviceRequest::Cuda(i)),
            _ => Err(TrainerError::Config(format!(
                "device must be auto, cpu, cuda or cuda:N, got {s:?}"
            ))),
        },
    }
}

/// The device a request resolves to here. `auto` takes a usable GPU and otherwise the CPU;
/// an explicit `cuda` that cannot be used is an error saying why.
pub fn resolve_device(s: &str) -> TrainerResult<Device> {
    match parse_device(s)? {
        DeviceRequest::Auto => Ok(Device::best()),
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Cuda(i) => Device::cuda(i).map_err(|e| {
            TrainerError::Device(format!(
                "CUDA device {i} was requested but cannot be used: {e}"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(parse_device("cuda:3").unwrap(), DeviceRequest::Cuda(3));
        assert_eq!(parse_device("cpu").unwrap(), DeviceRequest::Cpu);
        assert!(parse_device("gpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        assert_eq!(resolve_device("cpu").unwrap(), Device::Cpu);
        if Device::cuda_devices().is_empty() {
            let err = resolve_device("cuda").unwrap_err().to_string();
            assert!(err.contains("cannot be used"), "{err}");
        }
    }
}
