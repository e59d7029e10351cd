{# post_hook analyze: fresh statistics, so the next run plans its recent-rows filters as index scans;
   prune_deleted_rows: the tombstones of rows no longer in the mart are not needed any more #}
{{
    config(
        materialized='incremental',
        unique_key='interaction_id',
        incremental_strategy='delete+insert',
        post_hook=['analyze {{ this }}', "{{ prune_deleted_rows('app.coaching_interactions', 'interaction_id') }}"],
        indexes=[
            {'columns': ['interaction_id'], 'unique': True},
            {'columns': ['served_day']},
            {'columns': ['user_id']},
            {'columns': ['updated_at']},
        ],
    )
}}

with

interactions as (
    select * from {{ ref('stg_app__coaching_interactions') }}
    {% if is_incremental() %}
    -- responses arrive after the serve and update the row: updated_at is the watermark
    where updated_at >= {{ incremental_cutoff('updated_at') }}
    {% endif %}
),

users as (
    select * from {{ ref('stg_app__users') }}
),

final as (
    select
        interactions.interaction_id,
        interactions.request_id,
        interactions.user_id,
        users.income_band,
        {{ user_segment('users.income_band', 'users.birth_year') }} as user_segment,
        users.device_type,
        interactions.action_id,
        interactions.action_type,
        interactions.action_id <> 0 as is_nudge,
        interactions.serving_source,
        interactions.model_version,
        interactions.propensity,
        interactions.served_at,
        (interactions.served_at at time zone 'UTC')::date as served_day,
        coalesce(interactions.response, 'pending') as response,
        coalesce(interactions.response = 'accepted', false) as is_accepted,
        interactions.response is not null as is_answered,
        extract(epoch from interactions.responded_at - interactions.served_at) / 3600.0 as hours_to_response,
        interactions.updated_at
    from interactions
    left join users
        on interactions.user_id = users.user_id
)

select * from final
