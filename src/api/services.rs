//! The push services of each agency: each method hands its message type to the generic drivers.

use tonic::{Request, Response, Status, Streaming};

use super::Hub;
use super::push::{push_one, push_stream};
use crate::proto::{self, BulkPushResponse, RecordResult};

type Unary = Result<Response<RecordResult>, Status>;
type Bulk = Result<Response<BulkPushResponse>, Status>;

#[tonic::async_trait]
impl proto::staffing_service_server::StaffingService for Hub {
    async fn push_institution(&self, request: Request<proto::Institution>) -> Unary {
        push_one(self, request).await
    }
    async fn push_institutions(&self, request: Request<Streaming<proto::Institution>>) -> Bulk {
        push_stream(self, request).await
    }
    async fn push_quota(&self, request: Request<proto::Quota>) -> Unary {
        push_one(self, request).await
    }
    async fn push_quotas(&self, request: Request<Streaming<proto::Quota>>) -> Bulk {
        push_stream(self, request).await
    }
    async fn push_leader_post(&self, request: Request<proto::LeaderPost>) -> Unary {
        push_one(self, request).await
    }
    async fn push_leader_posts(&self, request: Request<Streaming<proto::LeaderPost>>) -> Bulk {
        push_stream(self, request).await
    }
    async fn push_staffing_plan(&self, request: Request<proto::StaffingPlan>) -> Unary {
        push_one(self, request).await
    }
    async fn push_staffing_plans(&self, request: Request<Streaming<proto::StaffingPlan>>) -> Bulk {
        push_stream(self, request).await
    }
    async fn push_hiring_approval(&self, request: Request<proto::HiringApproval>) -> Unary {
        push_one(self, request).await
    }
    async fn push_hiring_approvals(
        &self,
        request: Request<Streaming<proto::HiringApproval>>,
    ) -> Bulk {
        push_stream(self, request).await
    }
}

#[tonic::async_trait]
impl proto::personnel_service_server::PersonnelService for Hub {
    async fn push_personnel_event(&self, request: Request<proto::PersonnelEvent>) -> Unary {
        push_one(self, request).await
    }
    async fn push_personnel_events(
        &self,
        request: Request<Streaming<proto::PersonnelEvent>>,
    ) -> Bulk {
        push_stream(self, request).await
    }
}

#[tonic::async_trait]
impl proto::organization_service_server::OrganizationService for Hub {
    async fn push_appointment(&self, request: Request<proto::Appointment>) -> Unary {
        push_one(self, request).await
    }
    async fn push_appointments(&self, request: Request<Streaming<proto::Appointment>>) -> Bulk {
        push_stream(self, request).await
    }
}

#[tonic::async_trait]
impl proto::finance_service_server::FinanceService for Hub {
    async fn push_payroll_line(&self, request: Request<proto::PayrollLine>) -> Unary {
        push_one(self, request).await
    }
    async fn push_payroll_lines(&self, request: Request<Streaming<proto::PayrollLine>>) -> Bulk {
        push_stream(self, request).await
    }
    async fn push_funding(&self, request: Request<proto::Funding>) -> Unary {
        push_one(self, request).await
    }
    async fn push_fundings(&self, request: Request<Streaming<proto::Funding>>) -> Bulk {
        push_stream(self, request).await
    }
}
