with

source as (
    select * from {{ source('app', 'coaching_interactions') }}
),

renamed as (
    select
        id::bigint as interaction_id,
        request_id::text as request_id,
        user_id::bigint as user_id,
        action_id::integer as action_id,
        action_type::text as action_type,
        propensity::double precision as propensity,
        model_version::text as model_version,
        source::text as serving_source,
        served_at::timestamptz as served_at,
        response::text as response,
        responded_at::timestamptz as responded_at,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
