//! The `deskd.tickets.v1.TicketsService` handlers: decode and validate,
//! authorize, call the service once, encode. Proto messages are destructured
//! without `..`, so a new field fails the build until it is handled here.

mod convert;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{model::parse_id, service::TicketsService};
use crate::{
    error::AppError,
    grpc_util::{context, run},
    proto::tickets::v1::{
        CreateTicketRequest, CreateTicketResponse, DeleteTicketRequest, DeleteTicketResponse, ExportTicketsRequest,
        ExportTicketsResponse, GetTicketRequest, GetTicketResponse, ListTicketsRequest, ListTicketsResponse,
        UpdateTicketRequest, UpdateTicketResponse, tickets_service_server,
    },
};

pub use convert::*;

/// The gRPC face of `TicketsService`.
#[derive(Clone)]
pub struct TicketsGrpc {
    svc: Arc<TicketsService>,
}

impl TicketsGrpc {
    /// Wraps the service.
    pub fn new(svc: TicketsService) -> Self {
        Self { svc: Arc::new(svc) }
    }

    /// The tonic server for this service.
    pub fn into_server(self, cfg: &crate::config::ServerConfig) -> tickets_service_server::TicketsServiceServer<Self> {
        crate::grpc_util::configure_codec!(tickets_service_server::TicketsServiceServer::new(self), cfg)
    }
}

#[tonic::async_trait]
impl tickets_service_server::TicketsService for TicketsGrpc {
    async fn get_ticket(&self, req: Request<GetTicketRequest>) -> Result<Response<GetTicketResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let GetTicketRequest { id } = req.into_inner();
        run(&rid, async {
            let id = parse_id("id", &id).map_err(|v| AppError::InvalidArgument(vec![v]))?;
            let t = self.svc.get(&ctx, id).await?;
            Ok(GetTicketResponse {
                ticket: Some(to_proto(t)),
            })
        })
        .await
    }

    async fn list_tickets(&self, req: Request<ListTicketsRequest>) -> Result<Response<ListTicketsResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let r = req.into_inner();
        run(&rid, async {
            let (filter, size, token) = validate_list(r)?;
            let page = self.svc.list(&ctx, &filter, size, &token).await?;
            Ok(ListTicketsResponse {
                tickets: page.tickets.into_iter().map(to_proto).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            })
        })
        .await
    }

    async fn create_ticket(&self, req: Request<CreateTicketRequest>) -> Result<Response<CreateTicketResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let CreateTicketRequest { ticket, request_id } = req.into_inner();
        run(&rid, async {
            let (new, request_id) = validate_create(ticket, &request_id)?;
            let t = self.svc.create(&ctx, new, request_id).await?;
            Ok(CreateTicketResponse {
                ticket: Some(to_proto(t)),
            })
        })
        .await
    }

    async fn update_ticket(&self, req: Request<UpdateTicketRequest>) -> Result<Response<UpdateTicketResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let UpdateTicketRequest { ticket, update_mask } = req.into_inner();
        run(&rid, async {
            let (id, etag, patch) = validate_update(ticket, update_mask)?;
            let t = self.svc.update(&ctx, id, etag.as_deref(), &patch).await?;
            Ok(UpdateTicketResponse {
                ticket: Some(to_proto(t)),
            })
        })
        .await
    }

    async fn delete_ticket(&self, req: Request<DeleteTicketRequest>) -> Result<Response<DeleteTicketResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let DeleteTicketRequest { id, etag } = req.into_inner();
        run(&rid, async {
            let id = parse_id("id", &id).map_err(|v| AppError::InvalidArgument(vec![v]))?;
            let etag = (!etag.is_empty()).then_some(etag);
            self.svc.delete(&ctx, id, etag.as_deref()).await?;
            Ok(DeleteTicketResponse {})
        })
        .await
    }

    async fn export_tickets(
        &self,
        req: Request<ExportTicketsRequest>,
    ) -> Result<Response<ExportTicketsResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let r = req.into_inner();
        run(&rid, async {
            let job = validate_export(r)?;
            let op = self.svc.export(&ctx, job).await?;
            Ok(ExportTicketsResponse {
                operation: Some(crate::operations::grpc::to_proto(op)),
            })
        })
        .await
    }
}
