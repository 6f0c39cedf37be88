//! The protobuf codec used by every generated service: prost's, except that
//! a request that cannot be decoded answers INVALID_ARGUMENT (the client sent
//! bad bytes) instead of prost's INTERNAL, and without the decoder's text.

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

/// `application/grpc+proto` via prost, with deskd's decode-error mapping.
#[derive(Debug, Clone)]
pub struct DeskdCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for DeskdCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for DeskdCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = DeskdDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        DeskdDecoder { _pd: PhantomData }
    }
}

/// Decodes `U`, mapping failures to INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct DeskdDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for DeskdDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        U::decode(buf)
            .map(Some)
            .map_err(|_| Status::invalid_argument("the message could not be decoded as the method's protobuf type"))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
