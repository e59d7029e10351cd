with

decisions as (
    select * from {{ ref('stg_app__financial_decisions') }}
),

classified as (
    select
        decision_id,
        user_id,
        decision_type,
        coalesce(category, 'none') as decision_category,
        (decided_at at time zone 'UTC')::date as decision_date,
        amount,
        coalesce(outcome, 'pending') as outcome,
        coalesce(decision_context ->> 'source', 'unknown') = 'nudge' as is_nudged
    from decisions
),

final as (
    select
        decision_date,
        decision_type,
        decision_category,
        count(*) as decisions_count,
        count(distinct user_id) as users_count,
        count(*) filter (where outcome = 'completed') as completed_count,
        count(*) filter (where outcome = 'abandoned') as abandoned_count,
        count(*) filter (where outcome = 'pending') as pending_count,
        count(*) filter (where is_nudged) as nudged_count,
        (count(*) filter (where outcome = 'completed'))::double precision
            / nullif(count(*) filter (where outcome <> 'pending'), 0) as completion_rate,
        coalesce(sum(amount), 0) as total_amount,
        coalesce(sum(amount) filter (where outcome = 'completed'), 0) as completed_amount
    from classified
    group by decision_date, decision_type, decision_category
)

select * from final
