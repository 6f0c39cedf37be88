//! The `deskd.operations.v1.OperationsService` handlers, and the model ⇄
//! wire conversion of operations (also used by ExportTickets).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    model::{self, ExportResult, Operation, OperationError, State},
    service::OperationsService,
};
use crate::{
    error::AppError,
    grpc_util::{context, run, to_timestamp},
    proto::operations::v1::{
        self as pb, CancelOperationRequest, CancelOperationResponse, GetOperationRequest, GetOperationResponse,
        ListOperationsRequest, ListOperationsResponse, operations_service_server,
    },
};

/// The gRPC face of `OperationsService`.
#[derive(Clone)]
pub struct OperationsGrpc {
    svc: Arc<OperationsService>,
}

impl OperationsGrpc {
    /// Wraps the service.
    pub fn new(svc: OperationsService) -> Self {
        Self { svc: Arc::new(svc) }
    }

    /// The tonic server for this service.
    pub fn into_server(
        self,
        cfg: &crate::config::ServerConfig,
    ) -> operations_service_server::OperationsServiceServer<Self> {
        crate::grpc_util::configure_codec!(operations_service_server::OperationsServiceServer::new(self), cfg)
    }
}

fn state_to_proto(s: State) -> pb::OperationState {
    match s {
        State::Queued => pb::OperationState::Queued,
        State::Running => pb::OperationState::Running,
        State::Succeeded => pb::OperationState::Succeeded,
        State::Failed => pb::OperationState::Failed,
        State::Cancelled => pb::OperationState::Cancelled,
    }
}

/// Model → wire.
pub fn to_proto(op: Operation) -> pb::Operation {
    let name = op.name();
    let Operation {
        id: _,
        kind,
        state,
        rows_done,
        result,
        error,
        create_time,
        update_time,
    } = op;
    let done = state.is_done();
    let result = match (done, error, result) {
        (false, _, _) => None,
        (true, Some(OperationError { code, message }), _) => {
            Some(pb::operation::Result::Error(pb::OperationError { code, message }))
        }
        (
            true,
            None,
            Some(ExportResult {
                uri,
                path,
                row_count,
                size_bytes,
                format,
            }),
        ) => Some(pb::operation::Result::Response(pb::ExportResult {
            uri,
            path,
            row_count,
            size_bytes,
            format,
        })),
        (true, None, None) => Some(pb::operation::Result::Error(pb::OperationError {
            code: 13,
            message: "internal error".to_string(),
        })),
    };
    pb::Operation {
        name,
        metadata: Some(pb::OperationMetadata {
            kind,
            state: state_to_proto(state) as i32,
            rows_done,
            create_time: Some(to_timestamp(create_time)),
            update_time: Some(to_timestamp(update_time)),
        }),
        done,
        result,
    }
}

fn parse_name(name: &str) -> Result<uuid::Uuid, AppError> {
    model::parse_name("name", name).map_err(|v| AppError::InvalidArgument(vec![v]))
}

#[tonic::async_trait]
impl operations_service_server::OperationsService for OperationsGrpc {
    async fn get_operation(&self, req: Request<GetOperationRequest>) -> Result<Response<GetOperationResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let GetOperationRequest { name } = req.into_inner();
        run(&rid, async {
            let id = parse_name(&name)?;
            let op = self.svc.get(&ctx, id).await?;
            Ok(GetOperationResponse {
                operation: Some(to_proto(op)),
            })
        })
        .await
    }

    async fn list_operations(
        &self,
        req: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let ListOperationsRequest { page_size, page_token } = req.into_inner();
        run(&rid, async {
            let size = model::page_size(page_size).map_err(|v| AppError::InvalidArgument(vec![v]))?;
            let page = self.svc.list(&ctx, size, &page_token).await?;
            Ok(ListOperationsResponse {
                operations: page.operations.into_iter().map(to_proto).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            })
        })
        .await
    }

    async fn cancel_operation(
        &self,
        req: Request<CancelOperationRequest>,
    ) -> Result<Response<CancelOperationResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let CancelOperationRequest { name } = req.into_inner();
        run(&rid, async {
            let id = parse_name(&name)?;
            let op = self.svc.cancel(&ctx, id).await?;
            Ok(CancelOperationResponse {
                operation: Some(to_proto(op)),
            })
        })
        .await
    }
}
