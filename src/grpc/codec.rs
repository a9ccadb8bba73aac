//! The protobuf codec of dialgate's services: prost's, except that a
//! message that cannot be decoded (invalid UTF-8, a wrong wire type, a
//! truncated field) is the client's fault and answers `INVALID_ARGUMENT`,
//! not `INTERNAL` (tonic-prost's mapping). `INTERNAL` stays for our faults.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Generated code names this codec (see `build.rs`).
#[derive(Debug, Clone, Copy)]
pub struct ClientFaultCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ClientFaultCodec<T, U> {
    fn default() -> Self {
        ClientFaultCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for ClientFaultCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ClientFaultDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ClientFaultDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// Prost's decoder with decode errors mapped to `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct ClientFaultDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for ClientFaultDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The message lies in one contiguous buffer (tonic reads a whole
        // message before decoding it): decoded from a plain slice, prost
        // skips the layers of `Buf` it otherwise goes through for every
        // field and byte. (Decoding took about a sixth of the server's time
        // per screened number in a profile.)
        let len = buf.remaining();
        if let Some(message) = buf.chunk().get(..len) {
            let item = U::decode(message)
                .map_err(|err| decode_status(Status::internal(err.to_string())))?;
            buf.advance(len);
            return Ok(Some(item));
        }
        self.0.decode(buf).map_err(decode_status)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// A message that does not decode: the client's fault, not the server's.
#[derive(Debug, thiserror::Error)]
#[error("malformed message: {0}")]
struct Malformed(String);

impl crate::error::HasKind for Malformed {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::InvalidArgument
    }
}

/// The status of a message that does not decode.
pub fn decode_status(status: Status) -> Status {
    let shown = crate::registry::formats::quoted(status.message()).to_string();
    crate::error::grpc_status(&Malformed(shown))
}
